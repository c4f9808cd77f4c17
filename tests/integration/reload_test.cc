// SIGHUP applies every section of the config file: each test changes one section of a running
// agent's config and checks that the change is served, not the settings the agent started with.
// (pgbackrest: PgbackrestTest.ReloadAppliesAChangedStanza; web config: web_config_test.cc.)

#include <gtest/gtest.h>

#include <csignal>
#include <fstream>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/temp_dir.h"

namespace pgpulse::testing {
namespace {

class ReloadTest : public SharedServerTest {
 protected:
  // Starts the agent on `config`, kept as a file of the test's own name.
  std::unique_ptr<AgentProcess> Start(const std::string& config) {
    file_ =
        WriteTempFile(std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".yml", config);
    return AgentProcess::Start({"--config.file=" + file_});
  }
  // Rewrites the config file and sends SIGHUP; waits until the agent has counted one more reload.
  void Reload(AgentProcess& agent, const std::string& config) {
    const std::string reloads = "pgpulse_config_reloads_total{result=\"success\"}";
    const double before = SampleValue(Scrape(agent), reloads).value_or(0);
    WriteTempFile(std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + ".yml", config);
    agent.Signal(SIGHUP);
    std::string body =
        ScrapeUntil(agent, [&](const std::string& b) { return SampleValue(b, reloads).value_or(0) > before; });
    ASSERT_GT(SampleValue(body, reloads).value_or(0), before) << agent.Log();
  }
  std::string Target(const std::string& name, const std::string& extra = "") const {
    return "  - name: " + name + "\n    dsn: \"" + pg_->uri() + "\"\n" + extra;
  }
  std::string file_;
};

TEST_F(ReloadTest, TargetsAddedRemovedAndRelabelled) {
  auto agent = Start("targets:\n" + Target("main"));
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_up"), 1.0);
  Reload(*agent, "targets:\n" + Target("main") + Target("second", "    labels: {env: blue}\n"));
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up{target=\"main\"}"), 1.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_up{target=\"second\",env=\"blue\"}"), 1.0) << body;
  Reload(*agent, "targets:\n" + Target("main") + Target("second", "    labels: {env: green}\n"));
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up{target=\"second\",env=\"green\"}"), 1.0) << body;
  EXPECT_FALSE(SampleValue(body, "pg_up{target=\"second\",env=\"blue\"}"));
  Reload(*agent, "targets:\n" + Target("second"));
  body = Scrape(*agent);
  EXPECT_EQ(CountSamples(body, "pg_up"), 1) << body;
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << "one target again: no target label";
}

// The bug of issue 14: a changed `databases` section kept the old Target with its old settings.
TEST_F(ReloadTest, DatabasesDiscoveryIncludeAndExcludeApply) {
  pg_->Exec("DROP DATABASE IF EXISTS reload_app_a");
  pg_->Exec("DROP DATABASE IF EXISTS reload_app_b");
  pg_->Exec("CREATE DATABASE reload_app_a");
  pg_->Exec("CREATE DATABASE reload_app_b");
  const std::string defs = WriteTempFile("reload-defs/per_db.yaml", R"(collectors:
  - name: reload_per_db
    help: One per database it runs in.
    scope: database
    sql: SELECT 1 AS v
    columns:
      v: {gauge: pg_test_reload_per_db, help: One.}
)");
  const std::string collectors = "collectors:\n  directories: [\"" + defs.substr(0, defs.rfind('/')) + "\"]\n";
  auto databases = [&](const std::string& section) {
    return "targets:\n" + Target("main", "    databases:\n" + section) + collectors;
  };
  auto agent = Start(databases("      discover: false\n"));
  std::string body = Scrape(*agent);
  EXPECT_EQ(CountSamples(body, "pg_test_reload_per_db"), 1) << body;

  Reload(*agent, databases("      discover: true\n      include: ['reload_app_.*']\n"));
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_test_reload_per_db{datname=\"reload_app_a\"}"), 1.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_test_reload_per_db{datname=\"reload_app_b\"}"), 1.0) << body;
  EXPECT_EQ(CountSamples(body, "pg_test_reload_per_db"), 2) << body;

  // Three connections so far (the DSN's and one per discovered database); two at most from now on.
  const std::string connections = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse'";
  EXPECT_TRUE(PollUntil([&] { return pg_->Query(connections) == "3"; })) << pg_->Query(connections);
  Reload(*agent, databases("      discover: true\n      include: ['reload_app_.*']\n      max_connections: 2\n"));
  body = Scrape(*agent);
  EXPECT_EQ(CountSamples(body, "pg_test_reload_per_db"), 2) << body;
  EXPECT_TRUE(PollUntil([&] { return std::stoi(pg_->Query(connections)) <= 2; })) << pg_->Query(connections);

  Reload(*agent, databases("      discover: true\n      include: ['reload_app_.*']\n"
                           "      exclude: [reload_app_b]\n"));
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_test_reload_per_db{datname=\"reload_app_a\"}"), 1.0) << body;
  EXPECT_FALSE(SampleValue(body, "pg_test_reload_per_db{datname=\"reload_app_b\"}")) << body;
}

TEST_F(ReloadTest, FilesystemVisibilityApplies) {
  const std::string ttl0 = "collectors:\n  overrides:\n    tablespace_size: {ttl: 0s}\n";
  auto agent = Start("targets:\n" + Target("main", "    filesystem: {visible: no}\n") + ttl0);
  std::string body = Scrape(*agent);
  EXPECT_NE(body.find("pg_filesystem_visible{kind=\"data\""), std::string::npos) << body;
  EXPECT_NE(body.find("reason=\"disabled\""), std::string::npos) << body;
  Reload(*agent, "targets:\n" + Target("main", "    filesystem: {visible: auto}\n") + ttl0);
  body = Scrape(*agent);
  EXPECT_NE(body.find("pg_filesystem_visible{kind=\"data\""), std::string::npos) << body;
  EXPECT_EQ(body.find("reason=\"disabled\""), std::string::npos) << body;
}

TEST_F(ReloadTest, BackupFileSetsApply) {
  TempDir dir("pgpulse-reload-dumps");
  for (const char* name : {"a.dump", "b.dump", "c.sql.gz"}) std::ofstream(dir / name) << name;
  const auto sets = [&](const std::string& pattern) {
    return "targets:\n" + Target("main", "    backup_files:\n      - {name: nightly, path: " + dir.path() +
                                             ", pattern: '" + pattern + "'}\n");
  };
  auto agent = Start(sets("*.dump"));
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_backup_files{set=\"nightly\"}"), 2.0);
  Reload(*agent, sets("*.sql.gz"));
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_backup_files{set=\"nightly\"}"), 1.0) << body;
  Reload(*agent, "targets:\n" + Target("main"));
  body = Scrape(*agent);
  EXPECT_EQ(CountSamples(body, "pg_backup_files_visible"), 0) << body;
}

// The log's counts live in the Target: a reload that keeps it keeps them; one that changes its section starts
// again at the end of the log (history is not counted).
TEST_F(ReloadTest, LogCountsSurviveAReloadUnlessTheTargetIsRebuilt) {
  auto logging = PostgresServer::Start({"logging_collector = on", "log_destination = 'jsonlog'", "lc_messages = 'C'"});
  const std::string target = "targets:\n  - name: main\n    dsn: \"" + logging->uri() + "\"\n";
  auto agent = Start(target);
  ScrapeUntilValue(*agent, "pg_log_visible{format=\"jsonlog\",reason=\"\"}", 1);
  EXPECT_THROW(logging->Exec("SET statement_timeout = '20ms'; SELECT pg_sleep(5)"), pqxx::sql_error);
  std::string body = ScrapeUntilValue(*agent, "pg_log_statement_timeouts_total", 1);
  ASSERT_EQ(SampleValue(body, "pg_log_statement_timeouts_total"), 1) << body;

  Reload(*agent, target + "collectors:\n  disable: [database_stats]\n");
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_log_statement_timeouts_total"), 1) << "the target was kept";

  Reload(*agent, target + "    logs: {max_read_bytes: 65536}\n");
  body = ScrapeUntilValue(*agent, "pg_log_statement_timeouts_total", 0);
  EXPECT_EQ(SampleValue(body, "pg_log_statement_timeouts_total"), 0) << "a rebuilt target starts at the end";
}

TEST_F(ReloadTest, CollectorsDisableEnableAndOverridesApply) {
  pg_->Exec("DROP DATABASE IF EXISTS reload_collectors");
  pg_->Exec("CREATE DATABASE reload_collectors");
  auto agent = Start("targets:\n" + Target("main"));
  EXPECT_GE(CountSamples(Scrape(*agent), "pg_database_xact_commit_total"), 1);
  Reload(*agent, "targets:\n" + Target("main") + "collectors:\n  disable: [database_stats]\n");
  std::string body = Scrape(*agent);
  EXPECT_EQ(CountSamples(body, "pg_database_xact_commit_total"), 0) << body;
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);
  Reload(*agent, "targets:\n" + Target("main") + "collectors:\n  overrides:\n    database_stats: {max_series: 1}\n");
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"database_stats\",target=\"main\"}"), 1.0);
  EXPECT_GT(SampleValue(body,
                        "pgpulse_collector_series_dropped_total{collector=\"database_stats\",reason=\"limit\","
                        "target=\"main\"}")
                .value_or(0),
            0)
      << body;
}

TEST_F(ReloadTest, ScrapeSectionApplies) {
  auto agent = Start("targets:\n" + Target("main"));
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_up"), 1.0);
  Reload(*agent, "targets:\n" + Target("main") + "scrape:\n  collect_on_metrics_path: false\n");
  std::string body = Scrape(*agent);
  EXPECT_EQ(CountSamples(body, "pg_up"), 0) << body;
  EXPECT_EQ(SampleValue(Scrape(*agent, "/probe?target=main"), "pg_up"), 1.0);
}

TEST_F(ReloadTest, AuthModulesApplyToProbesAlreadyMade) {
  auto config = [&](const std::string& user) {
    // The test server trusts loopback and holds no password: an unverified server is allowed explicitly.
    return "targets:\n" + Target("main") + "auth_modules:\n  local:\n    user: " + user +
           "\n    allowed_targets: [127.0.0.1]\n    allow_unverified_server: true\n";
  };
  auto agent = Start(config("postgres"));
  const std::string probe = "/probe?target=127.0.0.1:" + std::to_string(pg_->port()) + "/postgres&auth_module=local";
  EXPECT_EQ(SampleValue(Scrape(*agent, probe), "pg_up"), 1.0);
  Reload(*agent, config("reload_no_such_role"));
  std::string body = Scrape(*agent, probe);
  EXPECT_EQ(SampleValue(body, "pg_up"), 0.0) << body;
  Reload(*agent, "targets:\n" + Target("main"));
  EXPECT_EQ(HttpGet(agent->url(probe)).status, 400);
}

}  // namespace
}  // namespace pgpulse::testing
