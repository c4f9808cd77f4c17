#pragma once
// The config of backup file sets (`targets[].backup_files`), apart from the source (dumps.h) so that
// agent/config.h can hold it without including the sources.

#include <string>
#include <vector>

namespace YAML {
class Node;
}
namespace pgpulse::collectors {
class YamlReader;
}

namespace pgpulse::agent {

// One set: `{name: nightly, path: /backups/db, pattern: '*.dump*'}`.
struct BackupFileSet {
  std::string name;     // the `set` label; letters, digits, '_', '-', '.'; unique per target
  std::string path;     // absolute directory as the agent sees it (not the server's path_prefix)
  std::string pattern;  // fnmatch(3) glob on the file names in `path` (no '/'; a leading '.' is never matched by *)
  bool operator==(const BackupFileSet& o) const { return name == o.name && path == o.path && pattern == o.pattern; }
};

// Parses `targets[].backup_files` (a list of sets) into `into`; every problem is reported
// through `r` as "file:line:col: <ctx>[i].key ...".
void ParseBackupFileSets(const YAML::Node& list, collectors::YamlReader& r, const std::string& ctx,
                         std::vector<BackupFileSet>& into);

}  // namespace pgpulse::agent
