#pragma once
// Backups made with pg_dump (`targets[].backup_files`): directories a cron job writes dump files into,
// looked at each collection (one readdir and a stat per matching file, no recursion, bounded) and
// reported as metric families: the newest file's age and size, the size of the one before it, the
// number of files and their total size, and whether the agent can see the directory at all.
//
// Threads: ScanBackupFiles and CollectBackupFiles are called by a target's worker thread; each scan
// runs on a short-lived thread of its own so a hung network filesystem cannot stall the collection.

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "agent/sources/dumps_config.h"
#include "agent/sources/source.h"
#include "collectors/family.h"
#include "collectors/reference.h"

namespace pgpulse::agent {

// Every metric the backup file sets report: the one place they are declared (families take their
// help from it; `pgpulse reference` lists it in queries/METRICS.md).
const collectors::DeclaredSource& BackupFilesSource();

// Directory entries read per scan at most (files that do not match count too): past it the set is
// reported not visible (reason too_many_entries) rather than with a newest file that may be wrong.
inline constexpr size_t kMaxBackupDirEntries = 10000;
// A scan still running after this long is reported not visible (reason timeout); that directory is
// not scanned again until the stuck call returns.
inline constexpr std::chrono::milliseconds kBackupScanTimeout{2000};

struct BackupFile {
  std::string name;
  long long mtime_seconds = 0;  // st_mtim.tv_sec
  long mtime_nanos = 0;         // st_mtim.tv_nsec, to order files written within one second
  double size_bytes = 0;        // st_size
};

struct BackupFileScan {
  bool visible = false;
  // "" when visible; else not_found, not_a_directory, permission_denied, too_many_entries, timeout, error.
  std::string reason;
  std::string detail;  // for people: the path and the system error
  size_t files = 0;    // regular files (or links to them) whose name matches the pattern
  double total_bytes = 0;
  std::vector<BackupFile> newest;  // the newest and the one before it, newest first (0 to 2 entries)
};

// Reads the set's directory now, on the calling thread. Never throws.
BackupFileScan ScanBackupFiles(const BackupFileSet& set, size_t max_entries = kMaxBackupDirEntries);

struct BackupFilesReport {
  std::vector<collectors::Family> families;
  size_t series = 0;
  std::string problems;  // "set nightly: cannot see /backups/db: ..." per set not visible; "" when all are
  double duration_seconds = 0;
};

// Scans every set (each within kBackupScanTimeout) and makes the families; `labels` (the target's)
// come first on every sample, then set (and path, reason on the visible gauge).
BackupFilesReport CollectBackupFiles(const std::vector<BackupFileSet>& sets,
                                     const std::vector<std::pair<std::string, std::string>>& labels);

// The source a target runs when it names backup file sets: every set scanned in every collection,
// whether the server is up or not (the files are the agent's to see, not the server's).
class DumpFileSetsSource : public sources::Source {
 public:
  DumpFileSetsSource(std::vector<BackupFileSet> sets, Labels labels)
      : sets_(std::move(sets)), labels_(std::move(labels)) {}
  sources::SourceOutcome Collect(const sources::SourceContext& context, Clock::time_point until) override;

 private:
  std::vector<BackupFileSet> sets_;
  Labels labels_;
};

}  // namespace pgpulse::agent
