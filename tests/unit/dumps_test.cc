// agent/sources/dumps.h: the backup_files config section and the directory scan, on files this test
// makes (the integration test in tests/integration/dumps_test.cc uses real pg_dump output).

#include "agent/sources/dumps.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "agent/config.h"
#include "tests/unit/helpers.h"

namespace pgpulse::agent {
namespace {

using pgpulse::testing::Joined;

ConfigResult Load(const std::string& sets) {
  return LoadConfigText("targets:\n  - name: main\n    backup_files:\n" + sets, "cfg.yml", "", "");
}

TEST(BackupFilesConfig, SetsLoadAndCompare) {
  ConfigResult r = Load(
      "      - {name: nightly, path: /backups/db/, pattern: '*.dump*'}\n"
      "      - name: hourly\n        path: /backups/hourly\n        pattern: 'app_*.sql.gz'\n");
  ASSERT_TRUE(r.ok()) << Joined(r.errors);
  const auto& sets = r.config.targets.at(0).backup_files;
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[0], (BackupFileSet{"nightly", "/backups/db", "*.dump*"})) << "a trailing / is dropped";
  EXPECT_EQ(sets[1], (BackupFileSet{"hourly", "/backups/hourly", "app_*.sql.gz"}));
  TargetConfig other = r.config.targets[0];
  other.backup_files[1].pattern = "*.sql";
  EXPECT_FALSE(other == r.config.targets[0]) << "a reload must rebuild the target when a set changes";
}

TEST(BackupFilesConfig, ErrorsNameLineAndKey) {
  ConfigResult r = Load(
      "      - {name: nightly, path: backups, pattern: 'a/*.dump'}\n"  // line 4
      "      - {name: 'bad name', path: /b}\n"                         // line 5
      "      - {name: nightly, path: /c, pattern: '', glob: x}\n");    // line 6
  ASSERT_FALSE(r.ok());
  const std::string all = Joined(r.errors);
  EXPECT_NE(all.find("cfg.yml:4:31: target 'main'.backup_files[0].path must be an absolute directory, got 'backups'"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("cfg.yml:4:49: target 'main'.backup_files[0].pattern 'a/*.dump' is matched against file names"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("cfg.yml:5:9: target 'main'.backup_files[1]: missing required key 'pattern'"), std::string::npos)
      << all;
  EXPECT_NE(all.find("cfg.yml:5:16: target 'main'.backup_files[1].name 'bad name' may only use"), std::string::npos)
      << all;
  EXPECT_NE(all.find("cfg.yml:6:"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown key 'glob'"), std::string::npos) << all;
  EXPECT_NE(all.find(".backup_files[2].pattern must not be empty"), std::string::npos) << all;
  EXPECT_NE(all.find("set name 'nightly' is used twice"), std::string::npos) << all;
}

TEST(BackupFilesConfig, NotAListAndLabelClashAreErrors) {
  ConfigResult r = LoadConfigText("targets:\n  - name: main\n    backup_files: {name: x}\n", "cfg.yml", "", "");
  EXPECT_NE(Joined(r.errors).find("cfg.yml:3:19: target 'main'.backup_files must be a list of {name, path, pattern}"),
            std::string::npos)
      << Joined(r.errors);
  r = LoadConfigText(
      "targets:\n  - name: main\n    labels: {set: a}\n    backup_files: [{name: x, path: /x, pattern: '*'}]\n",
      "cfg.yml", "", "");
  EXPECT_NE(Joined(r.errors).find("label 'set' is set by backup_files"), std::string::npos) << Joined(r.errors);
}

// A temporary directory, removed however the test ends.
struct TempDir {
  TempDir() {
    std::string tmpl = "/tmp/pgpulse-dumps-unit.XXXXXX";
    if (mkdtemp(tmpl.data())) path = tmpl;
  }
  ~TempDir() {
    if (!path.empty()) std::system(("rm -rf '" + path + "'").c_str());
  }
  void File(const std::string& name, size_t bytes, time_t mtime) const {
    std::ofstream(path + "/" + name) << std::string(bytes, 'x');
    timespec times[2] = {{mtime, 0}, {mtime, 0}};
    utimensat(AT_FDCWD, (path + "/" + name).c_str(), times, 0);
  }
  std::string path;
};

TEST(BackupFilesScan, NewestPreviousCountAndTotalOfMatchingFiles) {
  TempDir d;
  d.File("db_20261201.dump", 300, 1000);
  d.File("db_20261202.dump.gz", 200, 3000);
  d.File("db_20261203.dump", 100, 2000);
  d.File("notes.txt", 5000, 9000);              // does not match
  d.File(".db_tmp.dump", 7000, 9000);           // hidden: * does not match a leading '.'
  mkdir((d.path + "/old.dump").c_str(), 0755);  // a directory, not a file
  BackupFileScan s = ScanBackupFiles({"nightly", d.path, "*.dump*"});
  ASSERT_TRUE(s.visible) << s.detail;
  EXPECT_EQ(s.reason, "");
  EXPECT_EQ(s.files, 3u);
  EXPECT_EQ(s.total_bytes, 600);
  ASSERT_EQ(s.newest.size(), 2u);
  EXPECT_EQ(s.newest[0].name, "db_20261202.dump.gz");
  EXPECT_EQ(s.newest[0].mtime_seconds, 3000);
  EXPECT_EQ(s.newest[0].size_bytes, 200);
  EXPECT_EQ(s.newest[1].name, "db_20261203.dump") << "by modification time, not by name";
  EXPECT_EQ(s.newest[1].size_bytes, 100);
}

TEST(BackupFilesScan, EmptySetIsVisibleWithNoNewest) {
  TempDir d;
  d.File("other.txt", 10, 1000);
  BackupFileScan s = ScanBackupFiles({"nightly", d.path, "*.dump"});
  EXPECT_TRUE(s.visible);
  EXPECT_EQ(s.files, 0u);
  EXPECT_TRUE(s.newest.empty());
}

TEST(BackupFilesScan, MissingFileAndCrowdedDirectoriesSayWhy) {
  TempDir d;
  d.File("a.dump", 1, 1000);
  d.File("b.dump", 1, 1000);
  d.File("c.txt", 1, 1000);
  BackupFileScan s = ScanBackupFiles({"x", d.path + "/missing", "*"});
  EXPECT_FALSE(s.visible);
  EXPECT_EQ(s.reason, "not_found");
  EXPECT_NE(s.detail.find(d.path + "/missing: No such file or directory"), std::string::npos) << s.detail;
  s = ScanBackupFiles({"x", d.path + "/a.dump", "*"});
  EXPECT_EQ(s.reason, "not_a_directory") << s.detail;
  s = ScanBackupFiles({"x", d.path, "*.dump"}, 2);
  EXPECT_FALSE(s.visible);
  EXPECT_EQ(s.reason, "too_many_entries") << "every entry counts, matching or not";
  EXPECT_TRUE(ScanBackupFiles({"x", d.path, "*.dump"}, 3).visible);
}

// chmod 000 stops everyone but root (CAP_DAC_OVERRIDE), and tests run as root: the scan then runs in a child that
// has dropped to nobody, the agent's situation when its user may not list the backup directory.
TEST(BackupFilesScan, UnreadableDirectoryIsPermissionDenied) {
  TempDir d;
  ASSERT_EQ(chmod(d.path.c_str(), 0755), 0);
  const std::string locked = d.path + "/locked";
  ASSERT_EQ(mkdir(locked.c_str(), 0), 0);
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(out[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
    const BackupFileScan s = ScanBackupFiles({"x", locked, "*"});
    const std::string text = s.reason + "|" + s.detail;
    _exit(write(out[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : 3);
  }
  close(out[1]);
  std::string text;
  char buf[512];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(text, "permission_denied|cannot see " + locked + ": Permission denied");
}

TEST(BackupFilesScan, FamiliesCarryTargetLabelsThenSet) {
  TempDir d;
  d.File("a.dump", 10, 1000);
  BackupFilesReport r =
      CollectBackupFiles({{"nightly", d.path, "*.dump"}, {"gone", d.path + "/no", "*"}}, {{"target", "main"}});
  EXPECT_NE(r.problems.find("set gone: cannot see " + d.path + "/no"), std::string::npos) << r.problems;
  std::map<std::string, std::string> text;
  for (const auto& f : r.families) {
    for (size_t i = 0; i < f.size(); ++i) text[f.name] += std::string(f.suffix(i)) + "=" + std::to_string(f.values[i]);
  }
  EXPECT_EQ(text["pg_backup_files_visible"], "{target=\"main\",set=\"nightly\",path=\"" + d.path +
                                                 "\",reason=\"\"}=1.000000{target=\"main\",set=\"gone\",path=\"" +
                                                 d.path + "/no\",reason=\"not_found\"}=0.000000");
  EXPECT_EQ(text["pg_backup_files"], "{target=\"main\",set=\"nightly\"}=1.000000");
  EXPECT_EQ(text["pg_backup_files_newest_timestamp_seconds"], "{target=\"main\",set=\"nightly\"}=1000.000000");
  EXPECT_EQ(text.count("pg_backup_files_previous_size_bytes"), 0u) << "one file: no previous";
  EXPECT_EQ(r.series, 6u);
}

}  // namespace
}  // namespace pgpulse::agent
