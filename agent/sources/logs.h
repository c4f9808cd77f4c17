#pragma once
// Errors by kind: the server's csvlog or jsonlog read as it grows, its records counted by
// severity and SQLSTATE class, and by the kinds SREs alert on (statement timeouts,
// deadlocks, authentication failures, out of memory, serialization failures, disk full).
// Only counts leave the agent, never message text.
//
// Read only when the log is visible by the filesystem's rule (the server is on this machine
// and its postmaster.pid matches, or targets[].filesystem.visible: yes), logging_collector is
// on and log_destination has csvlog or jsonlog. The file is the one `current_logfiles` (in the
// data directory) names, or pg_current_logfile() where that file cannot be read; jsonlog is preferred when both are
// written. Counting starts at the file's end when the agent first sees it (history is not counted); then it follows
// rotation (a new current file: the old one is read to its end first), truncation (read again from the start) and a
// partial last line (counted once complete).
//
// Threads: the target's worker thread only; no locks.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/sources/log_reader.h"
#include "agent/sources/logs_config.h"
#include "agent/sources/source.h"
#include "collectors/family.h"
#include "collectors/filesystem.h"
#include "collectors/reference.h"

namespace pgpulse::agent::sources {

// Every metric this source reports, with its help text (listed in queries/METRICS.md).
const collectors::DeclaredSource& LogsSource();

// The named counters, by what a record is: a statement timeout, a deadlock, ...
// (metric name suffix, e.g. "deadlocks"); empty if none. Only SQLSTATE and message are looked at.
std::vector<const char*> KindsOf(const LogRecord& record);

// The counts of one target's log, kept across collections. Bounded: severities outside
// PostgreSQL's list count as "other", and past kMaxSeries (severity, class) pairs the class is "other".
class LogCounts {
 public:
  static constexpr size_t kMaxSeries = 200;
  void Add(const LogRecord& record);
  const std::map<std::pair<std::string, std::string>, uint64_t>& messages() const { return messages_; }
  const std::map<std::string, uint64_t>& kinds() const { return kinds_; }

 private:
  std::map<std::pair<std::string, std::string>, uint64_t> messages_;  // (severity, sqlstate class)
  std::map<std::string, uint64_t> kinds_;                             // every named kind, 0 until seen
};

// A log file followed by its path: the open file, how far it was read, the record in progress.
class LogTail {
 public:
  struct Step {
    std::string reason;  // "" when read; else not_found, permission_denied, error
    std::string detail;
  };
  LogTail() = default;
  ~LogTail();
  LogTail(const LogTail&) = delete;
  LogTail& operator=(const LogTail&) = delete;

  // Reads what `path` gained since the last call (at most `max_bytes`), passing each complete record
  // to `counts`. The first call only notes the end of the file.
  Step Read(const std::string& path, LogFormat format, size_t max_bytes, LogCounts& counts);

  uint64_t read_bytes() const { return read_bytes_; }
  uint64_t rotations() const { return rotations_; }
  uint64_t truncations() const { return truncations_; }
  uint64_t malformed() const { return malformed_ + (parser_ ? parser_->malformed() : 0); }
  uint64_t unread_bytes() const { return unread_bytes_; }

 private:
  void Open(int fd, const std::string& path, LogFormat format, off_t offset, dev_t dev, ino_t ino);
  void Close();
  // Reads from offset_ to `size` (or max_bytes); returns the bytes read; -1 on a read error.
  long long ReadUpTo(off_t size, size_t max_bytes, LogCounts& counts);

  int fd_ = -1;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  off_t offset_ = 0;
  std::unique_ptr<LogParser> parser_;
  uint64_t read_bytes_ = 0, rotations_ = 0, truncations_ = 0, malformed_ = 0, unread_bytes_ = 0;
};

class LogSource : public Source {
 public:
  static constexpr const char* kName = "logs";
  LogSource(LogsConfig config, Labels labels) : config_(config), labels_(std::move(labels)) {}

  // One collection of a PostgreSQL target that is up (nothing is reported otherwise): decides
  // whether the log is visible (the filesystem's rule), reads what was added, and returns the
  // families as the "logs" collector's outcome (skipped, with the reason, when not read).
  SourceOutcome Collect(const SourceContext& context, Clock::time_point until) override;

 private:
  // Finds the current log file and reads it; sets format_ on success, else returns why not.
  LogTail::Step Follow(const collectors::ServerLocation& where, const collectors::FilesystemAccess& access);
  // The contents of current_logfiles ("format path" lines), or where it cannot be read, the same made from
  // what pg_current_logfile() said; "" if the server names no file.
  LogTail::Step CurrentLogfiles(const collectors::ServerLocation& where, const std::string& list_path, bool json,
                                std::string& contents);
  std::vector<collectors::Family> Families(const LogTail::Step& step) const;

  const LogsConfig config_;
  const Labels labels_;
  LogCounts counts_;
  LogTail tail_;
  std::string format_;  // of the file read last: csvlog or jsonlog
  bool seen_ = false;   // a file was read at least once: the counters are reported from then on
};

}  // namespace pgpulse::agent::sources
