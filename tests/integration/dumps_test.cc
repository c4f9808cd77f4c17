// Backups made with pg_dump (targets[].backup_files, agent/sources/dumps.h) against real dumps: Debian's pg_dump
// writes timestamped files of a throwaway server's database into a directory of the test's own, and the agent's
// metrics are checked against stat() of those files; then the newest file set back in time, a newest dump cut
// short, a set with no matching file, and directories the agent cannot read, each with its reason.
//
// Tests run as root, and root reads a chmod 000 directory anyway (CAP_DAC_OVERRIDE), so the agent here is shown a
// missing path and a regular file instead; permission_denied is checked with privileges dropped in
// tests/unit/dumps_test.cc (BackupFilesScan.UnreadableDirectoryIsPermissionDenied).

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <string>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/pg_dump.h"
#include "tests/harness/polling.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/temp_dir.h"

namespace pgpulse::testing {
namespace {

struct stat StatOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st;
}

class DumpFilesTest : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    SharedServerTest::SetUpTestSuite();
    pg_->Exec("CREATE TABLE dumped AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 20000) g");
  }
  void SetUp() override {
    if (PgClientProgram(*pg_, "pg_dump").empty())
      GTEST_SKIP() << "no pg_dump of the server's major version (Debian's postgresql-client, tests/deps.sh)";
  }

  // pg_dump of the server's postgres database into `file`: custom format, or plain and gzipped for .sql.gz.
  void Dump(const std::string& file) {
    const bool plain = file.size() > 7 && file.compare(file.size() - 7, 7, ".sql.gz") == 0;
    PgDump(*pg_, file, {plain ? "--format=plain" : "--format=custom", plain ? "--compress=6" : "--compress=0"});
  }
  // Starts the agent watching `sets` (YAML list items, each "{name: ..., path: ..., pattern: ...}").
  std::unique_ptr<AgentProcess> StartAgent(const std::vector<std::string>& sets) {
    std::string cfg = "targets:\n  - name: main\n    dsn: \"" + pg_->uri() + "\"\n    backup_files:\n";
    for (const auto& s : sets) cfg += "      - " + s + "\n";
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    return AgentProcess::Start({"--config.file=" + WriteTempFile(name + ".yml", cfg)});
  }
  static std::string Set(const std::string& name) { return "{set=\"" + name + "\"}"; }
  static std::string Visible(const std::string& set, const std::string& path, const std::string& reason) {
    return "pg_backup_files_visible{set=\"" + set + "\",path=\"" + path + "\",reason=\"" + reason + "\"}";
  }
};

TEST_F(DumpFilesTest, RealPgDumpFilesAreMeasuredAsStatSeesThem) {
  TempDir dir("pgpulse-dumps");
  const long long now = time(nullptr);
  // Three nights of a cron job: custom-format dumps and one gzipped plain dump, oldest first.
  Dump(dir / "backup_20261202_0300.dump");
  pg_->Exec("INSERT INTO dumped SELECT g, md5(g::text) FROM generate_series(20001, 25000) g");
  Dump(dir / "backup_20261203_0300.sql.gz");
  pg_->Exec("INSERT INTO dumped SELECT g, md5(g::text) FROM generate_series(25001, 30000) g");
  Dump(dir / "backup_20261204_0300.dump");
  ASSERT_TRUE(SetModifiedTime(dir / "backup_20261202_0300.dump", now - 2 * 86400));
  ASSERT_TRUE(SetModifiedTime(dir / "backup_20261203_0300.sql.gz", now - 86400));
  std::ofstream(dir / "README") << "not a dump\n";
  std::ofstream(dir / ".backup_20261205_0300.dump.partial") << "hidden: '*' does not match a leading dot\n";

  auto agent = StartAgent({"{name: nightly, path: " + dir.path() + ", pattern: 'backup_*'}"});
  const std::string body = Scrape(*agent);
  const struct stat oldest = StatOf(dir / "backup_20261202_0300.dump");
  const struct stat previous = StatOf(dir / "backup_20261203_0300.sql.gz");
  const struct stat newest = StatOf(dir / "backup_20261204_0300.dump");
  EXPECT_EQ(SampleValue(body, Visible("nightly", dir.path(), "")), 1) << body;
  EXPECT_EQ(SampleValue(body, "pg_backup_files" + Set("nightly")), 3) << body;
  EXPECT_EQ(SampleValue(body, "pg_backup_files_size_bytes" + Set("nightly")),
            static_cast<double>(oldest.st_size + previous.st_size + newest.st_size));
  EXPECT_EQ(SampleValue(body, "pg_backup_files_newest_timestamp_seconds" + Set("nightly")),
            static_cast<double>(newest.st_mtim.tv_sec));
  EXPECT_EQ(SampleValue(body, "pg_backup_files_newest_size_bytes" + Set("nightly")),
            static_cast<double>(newest.st_size));
  EXPECT_EQ(SampleValue(body, "pg_backup_files_previous_size_bytes" + Set("nightly")),
            static_cast<double>(previous.st_size));
  EXPECT_GT(newest.st_size, 100000) << "a real dump of 30000 rows";
  EXPECT_GE(newest.st_mtim.tv_sec, now - 5);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"backup_files\",target=\"main\"}"), 1) << body;
  EXPECT_EQ(SampleValue(body, "pg_up"), 1) << "the server's own collectors go on beside the scan";
}

TEST_F(DumpFilesTest, NewestSetBackInTimeMakesTheSetOld) {
  TempDir dir("pgpulse-dumps");
  Dump(dir / "backup_20261203_0300.dump");
  Dump(dir / "backup_20261204_0300.dump");
  auto agent = StartAgent({"{name: nightly, path: " + dir.path() + ", pattern: '*.dump*'}"});
  const std::string ts = "pg_backup_files_newest_timestamp_seconds" + Set("nightly");
  EXPECT_GT(SampleValue(Scrape(*agent), ts).value_or(0), static_cast<double>(time(nullptr) - 60));

  // The cron job stopped: both files were last written 30 and 54 hours ago.
  const long long now = time(nullptr);
  ASSERT_TRUE(SetModifiedTime(dir / "backup_20261204_0300.dump", now - 30 * 3600));
  ASSERT_TRUE(SetModifiedTime(dir / "backup_20261203_0300.dump", now - 54 * 3600));
  const std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, ts), static_cast<double>(StatOf(dir / "backup_20261204_0300.dump").st_mtim.tv_sec));
  EXPECT_GT(static_cast<double>(time(nullptr)) - SampleValue(body, ts).value_or(0), 26 * 3600.0)
      << "older than PostgreSQLDumpTooOld's 26 hours";
  EXPECT_EQ(SampleValue(body, "pg_backup_files" + Set("nightly")), 2);
}

TEST_F(DumpFilesTest, NewestDumpCutShortIsSmallerThanThePrevious) {
  TempDir dir("pgpulse-dumps");
  Dump(dir / "backup_20261203_0300.dump");
  ASSERT_TRUE(SetModifiedTime(dir / "backup_20261203_0300.dump", time(nullptr) - 86400));
  // Tonight's pg_dump was killed part way: a quarter of its file is there.
  const std::string cut = dir / "backup_20261204_0300.dump";
  Dump(cut);
  ASSERT_EQ(truncate(cut.c_str(), StatOf(cut).st_size / 4), 0);
  CommandResult restore = RunCommand({PgClientProgram(*pg_, "pg_restore"), "--file=/dev/null", cut});
  EXPECT_NE(restore.exit_status, 0) << "the cut file is not a restorable dump: " << restore.output;

  auto agent = StartAgent({"{name: nightly, path: " + dir.path() + ", pattern: '*.dump'}"});
  const std::string body = Scrape(*agent);
  const double newest = SampleValue(body, "pg_backup_files_newest_size_bytes" + Set("nightly")).value_or(-1);
  const double previous = SampleValue(body, "pg_backup_files_previous_size_bytes" + Set("nightly")).value_or(-1);
  EXPECT_EQ(newest, static_cast<double>(StatOf(cut).st_size)) << body;
  EXPECT_EQ(previous, static_cast<double>(StatOf(dir / "backup_20261203_0300.dump").st_size)) << body;
  EXPECT_LT(newest / previous, 0.5) << "below PostgreSQLDumpTruncated's ratio";
}

TEST_F(DumpFilesTest, SetWithNoMatchingFileIsVisibleAndEmpty) {
  TempDir dir("pgpulse-dumps");
  Dump(dir / "backup_20261204_0300.dump");
  auto agent = StartAgent({"{name: hourly, path: " + dir.path() + ", pattern: '*.sql.gz'}"});
  const std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, Visible("hourly", dir.path(), "")), 1) << body;
  EXPECT_EQ(SampleValue(body, "pg_backup_files" + Set("hourly")), 0) << body;
  EXPECT_EQ(SampleValue(body, "pg_backup_files_size_bytes" + Set("hourly")), 0) << body;
  EXPECT_EQ(CountSamples(body, "pg_backup_files_newest_timestamp_seconds"), 0) << "no newest file to date";
  EXPECT_EQ(CountSamples(body, "pg_backup_files_previous_size_bytes"), 0);
}

TEST_F(DumpFilesTest, DirectoriesTheAgentCannotReadSayWhyAndReportNothingElse) {
  TempDir dir("pgpulse-dumps");
  Dump(dir / "backup_20261204_0300.dump");
  const std::string missing = dir / "not-mounted";
  const std::string file = dir / "backup_20261204_0300.dump";
  auto agent = StartAgent({"{name: nightly, path: " + dir.path() + ", pattern: '*.dump'}",
                           "{name: offsite, path: " + missing + ", pattern: '*.dump'}",
                           "{name: typo, path: " + file + ", pattern: '*.dump'}"});
  const std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, Visible("nightly", dir.path(), "")), 1) << body;
  EXPECT_EQ(SampleValue(body, Visible("offsite", missing, "not_found")), 0) << body;
  EXPECT_EQ(SampleValue(body, Visible("typo", file, "not_a_directory")), 0) << body;
  // Only the visible set has the other metrics: an unreadable directory is not an empty set.
  EXPECT_EQ(CountSamples(body, "pg_backup_files"), 1) << body;
  EXPECT_FALSE(SampleValue(body, "pg_backup_files" + Set("offsite")));
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"backup_files\",target=\"main\"}"), 1)
      << "a set not visible is reported, not a failing collector";
  // The landing page says what the system said, path included.
  const std::string page = HttpGet(agent->url("/")).body;
  EXPECT_NE(page.find("set offsite: cannot see " + missing + ": No such file or directory"), std::string::npos) << page;
  EXPECT_NE(page.find("set typo: cannot see " + file + ": Not a directory"), std::string::npos) << page;
}

}  // namespace
}  // namespace pgpulse::testing
