#include "agent/sources/dumps.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "collectors/text.h"
#include "collectors/yaml_reader.h"

namespace pgpulse::agent {

namespace {

using LabelSet = std::vector<std::pair<std::string, std::string>>;

bool ValidSetName(const std::string& s) {
  return !s.empty() && s.size() <= 64 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == std::string::npos;
}

void ParseSet(const YAML::Node& s, collectors::YamlReader& r, const std::string& ctx, BackupFileSet& set) {
  if (!r.Map(s, ctx, {"name", "path", "pattern"})) return;
  for (const char* key : {"name", "path", "pattern"}) {
    if (!s[key]) r.Error(s, ctx + ": missing required key '" + key + "'");
  }
  if (s["name"]) {
    set.name = r.String(s["name"], ctx + ".name").value_or("");
    if (!ValidSetName(set.name))
      r.Error(s["name"], ctx + ".name '" + set.name + "' may only use letters, digits, '_', '-' and '.' (1 to 64)");
  }
  if (s["path"]) {
    set.path = r.String(s["path"], ctx + ".path").value_or("");
    if (set.path.empty() || set.path[0] != '/')
      r.Error(s["path"], ctx + ".path must be an absolute directory, got '" + set.path + "'");
    while (set.path.size() > 1 && set.path.back() == '/') set.path.pop_back();
  }
  if (s["pattern"]) {
    set.pattern = r.String(s["pattern"], ctx + ".pattern").value_or("");
    if (set.pattern.empty()) r.Error(s["pattern"], ctx + ".pattern must not be empty (e.g. '*.dump*')");
    else if (set.pattern.find('/') != std::string::npos)
      r.Error(s["pattern"], ctx + ".pattern '" + set.pattern +
                                "' is matched against file names in path, so it cannot contain '/' "
                                "(sub-directories are not searched)");
  }
}

const std::string& HelpOf(const std::string& name) {
  for (const collectors::DeclaredMetric& m : BackupFilesSource().metrics) {
    if (m.name == name) return m.help;
  }
  throw std::logic_error("backup_files metric " + name + " is not declared in BackupFilesSource()");
}

LabelSet With(LabelSet labels, std::initializer_list<std::pair<std::string, std::string>> more) {
  labels.insert(labels.end(), more.begin(), more.end());
  return labels;
}

const char* ReasonOf(int err) {
  switch (err) {
    case ENOENT: return "not_found";
    case ENOTDIR: return "not_a_directory";
    case EACCES:
    case EPERM: return "permission_denied";
    default: return "error";
  }
}

// The newest two of `files` (by mtime, then name), newest first.
void KeepNewest(std::vector<BackupFile>& newest, BackupFile f) {
  auto newer = [](const BackupFile& a, const BackupFile& b) {
    if (a.mtime_seconds != b.mtime_seconds) return a.mtime_seconds > b.mtime_seconds;
    return a.mtime_nanos != b.mtime_nanos ? a.mtime_nanos > b.mtime_nanos : a.name > b.name;
  };
  newest.push_back(std::move(f));
  std::sort(newest.begin(), newest.end(), newer);
  if (newest.size() > 2) newest.pop_back();
}

// Directories whose scan overran kBackupScanTimeout and has not returned yet. Never destroyed:
// a stuck thread may outlive main().
struct Stuck {
  std::mutex mu;
  std::set<std::string> paths;  // guarded by mu
};
Stuck& stuck = *new Stuck;

BackupFileScan NotVisible(const char* reason, std::string detail) {
  BackupFileScan out;
  out.reason = reason;
  out.detail = std::move(detail);
  return out;
}

// ScanBackupFiles on a thread of its own, given up after kBackupScanTimeout.
BackupFileScan ScanWithin(const BackupFileSet& set) {
  {
    std::lock_guard<std::mutex> lock(stuck.mu);
    if (stuck.paths.count(set.path))
      return NotVisible(
          "timeout", "cannot see " + set.path + ": an earlier scan of it has not returned (hung network filesystem?)");
  }
  auto done = std::make_shared<std::promise<BackupFileScan>>();
  std::future<BackupFileScan> result = done->get_future();
  try {
    std::thread([done, set] {
      done->set_value(ScanBackupFiles(set));
      std::lock_guard<std::mutex> lock(stuck.mu);
      stuck.paths.erase(set.path);
    }).detach();
  } catch (const std::system_error& e) {
    return NotVisible("error", "cannot scan " + set.path + ": cannot start a thread: " + e.what());
  }
  if (result.wait_for(kBackupScanTimeout) != std::future_status::ready) {
    // Checked again under the lock: a scan finishing now erases the mark right after.
    std::lock_guard<std::mutex> lock(stuck.mu);
    if (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      stuck.paths.insert(set.path);
      return NotVisible("timeout", "cannot see " + set.path + ": the scan did not finish within " +
                                       std::to_string(kBackupScanTimeout.count()) + " ms (hung network filesystem?)");
    }
  }
  return result.get();
}

class Families {
 public:
  void Add(const std::string& name, const LabelSet& labels, double value) {
    auto it = index_.find(name);
    if (it == index_.end()) {
      it = index_.emplace(name, list_.size()).first;
      collectors::Family f;
      f.name = name;
      f.help = HelpOf(name);
      list_.push_back(std::move(f));
    }
    list_[it->second].Add(collectors::RenderLabels(labels), value);
    ++series_;
  }
  size_t series() const { return series_; }
  std::vector<collectors::Family> Take() { return std::move(list_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<collectors::Family> list_;
  size_t series_ = 0;
};

void AddSet(Families& out, const BackupFileSet& set, const BackupFileScan& scan, const LabelSet& labels) {
  const LabelSet base = With(labels, {{"set", set.name}});
  out.Add("pg_backup_files_visible", With(base, {{"path", set.path}, {"reason", scan.reason}}), scan.visible ? 1 : 0);
  if (!scan.visible) return;
  out.Add("pg_backup_files", base, static_cast<double>(scan.files));
  out.Add("pg_backup_files_size_bytes", base, scan.total_bytes);
  if (!scan.newest.empty()) {
    out.Add("pg_backup_files_newest_timestamp_seconds", base, static_cast<double>(scan.newest[0].mtime_seconds));
    out.Add("pg_backup_files_newest_size_bytes", base, scan.newest[0].size_bytes);
  }
  if (scan.newest.size() > 1) out.Add("pg_backup_files_previous_size_bytes", base, scan.newest[1].size_bytes);
}

}  // namespace

void ParseBackupFileSets(const YAML::Node& list, collectors::YamlReader& r, const std::string& ctx,
                         std::vector<BackupFileSet>& into) {
  if (!list.IsSequence()) {
    r.Error(list, ctx + " must be a list of {name, path, pattern}");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    BackupFileSet set;
    ParseSet(list[i], r, ctx + "[" + std::to_string(i) + "]", set);
    if (!set.name.empty() && !names.insert(set.name).second)
      r.Error(list[i]["name"], ctx + ": set name '" + set.name + "' is used twice");
    into.push_back(set);
  }
}

const collectors::DeclaredSource& BackupFilesSource() {
  static const collectors::DeclaredSource source{
      "backup_files",
      "Not a SQL collector: for each set in `targets[].backup_files` (`{name, path, pattern}`), the agent reads the "
      "directory `path` in each collection (no sub-directories) and looks at the regular files whose name matches "
      "the glob `pattern`, e.g. the files a cron job running pg_dump writes. A directory with more than " +
          std::to_string(kMaxBackupDirEntries) + " entries, or whose scan takes over " +
          std::to_string(kBackupScanTimeout.count()) +
          " ms, is reported not visible. Every sample also has the target's labels.",
      {
          {"pg_backup_files_visible", "gauge", "set, path, reason", "-",
           "1 if the agent could read the set's directory, 0 if not; reason says why not: not_found, "
           "not_a_directory, permission_denied, too_many_entries, timeout or error. The other metrics of the set "
           "are only there while it is 1."},
          {"pg_backup_files", "gauge", "set", "-", "Files in the set's directory whose name matches its pattern."},
          {"pg_backup_files_size_bytes", "gauge", "set", "bytes", "Total size of the set's files, in bytes."},
          {"pg_backup_files_newest_timestamp_seconds", "gauge", "set", "seconds",
           "When the set's newest file (by modification time) was last written, in seconds since the epoch "
           "(age: time() - this). Absent while the set is empty."},
          {"pg_backup_files_newest_size_bytes", "gauge", "set", "bytes",
           "Size of the set's newest file, in bytes. Absent while the set is empty."},
          {"pg_backup_files_previous_size_bytes", "gauge", "set", "bytes",
           "Size of the file before the newest, in bytes: a newest dump much smaller than this one was likely cut "
           "short. Absent while the set has fewer than 2 files."},
      }};
  return source;
}

BackupFileScan ScanBackupFiles(const BackupFileSet& set, size_t max_entries) {
  DIR* dir = opendir(set.path.c_str());
  if (!dir) {
    const int err = errno;
    return NotVisible(ReasonOf(err), "cannot see " + set.path + ": " + std::strerror(err));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, closedir);
  BackupFileScan out;
  size_t entries = 0;
  errno = 0;
  while (const dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (++entries > max_entries)
      return NotVisible("too_many_entries", set.path + " has more than " + std::to_string(max_entries) +
                                                " entries: not scanned (move old dumps elsewhere)");
    if (fnmatch(set.pattern.c_str(), name.c_str(), FNM_PERIOD) != 0) continue;
    struct stat st {};
    // Gone since readdir (a cleanup job) or not a regular file: not part of the set.
    if (fstatat(dirfd(dir), name.c_str(), &st, 0) != 0 || !S_ISREG(st.st_mode)) continue;
    out.files++;
    out.total_bytes += static_cast<double>(st.st_size);
    KeepNewest(out.newest, BackupFile{name, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, static_cast<double>(st.st_size)});
  }
  if (errno != 0) {
    const int err = errno;
    return NotVisible(ReasonOf(err), "cannot read " + set.path + ": " + std::strerror(err));
  }
  out.visible = true;
  return out;
}

BackupFilesReport CollectBackupFiles(const std::vector<BackupFileSet>& sets, const LabelSet& labels) {
  const auto start = std::chrono::steady_clock::now();
  BackupFilesReport report;
  Families families;
  for (const BackupFileSet& set : sets) {
    const BackupFileScan scan = ScanWithin(set);
    if (!scan.visible)
      report.problems += (report.problems.empty() ? "" : "; ") + ("set " + set.name + ": ") + scan.detail;
    AddSet(families, set, scan, labels);
  }
  report.series = families.series();
  report.families = families.Take();
  report.duration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

sources::SourceOutcome DumpFileSetsSource::Collect(const sources::SourceContext&, Clock::time_point) {
  BackupFilesReport r = CollectBackupFiles(sets_, labels_);
  sources::SourceOutcome s;
  s.ran = true;
  s.outcome = CollectorOutcome{"backup_files",
                               "",
                               CollectorStatus::Ok,
                               collectors::OneLine(r.problems),
                               r.duration_seconds,
                               r.series,
                               std::make_shared<const std::vector<collectors::Family>>(std::move(r.families))};
  return s;
}

}  // namespace pgpulse::agent
