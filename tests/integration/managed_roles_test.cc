// Managed PostgreSQL (RDS, Cloud SQL, Azure, Supabase, ...) gives no superuser: the agent's role has
// pg_monitor at best, sometimes only CONNECT. Every default collector must then work, or skip itself
// naming what is missing; the scrape itself never fails.

#include <gtest/gtest.h>

#include <string>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

class ManagedRoles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pg_ = PostgresServer::Start({"archive_mode = on", "archive_command = '/bin/true'"}).release();
    pg_->Exec(
        "CREATE ROLE connect_only LOGIN;"
        "CREATE ROLE monitor LOGIN;"
        "GRANT pg_monitor TO monitor;");
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  static std::string Dsn(const std::string& user) {
    return "postgresql://" + user + "@127.0.0.1:" + std::to_string(pg_->port()) + "/postgres";
  }
  // The `check --connect` table line of one collector.
  static std::string Line(const std::string& output, const std::string& collector) {
    size_t at = output.find("\n" + collector + " ");
    if (at == std::string::npos) return "(no line for " + collector + ")";
    return output.substr(at + 1, output.find('\n', at + 1) - at - 1);
  }
  static PostgresServer* pg_;
};
PostgresServer* ManagedRoles::pg_ = nullptr;

// The collectors that need pg_monitor's privileges, and what each skip line must say.
const char* const kNeedPgMonitor[][2] = {
    {"filesystem",
     "needs the privileges of pg_read_all_settings (included in pg_monitor), which role connect_only "
     "lacks: GRANT pg_monitor TO connect_only"},
    {"wal_directory",
     "needs the privileges of pg_monitor, which role connect_only lacks: GRANT pg_monitor TO connect_only"},
    {"archiver_pending",
     "needs the privileges of pg_monitor, which role connect_only lacks: GRANT pg_monitor TO connect_only"},
};

TEST_F(ManagedRoles, ConnectOnlyRoleSkipsWhatNeedsPgMonitorAndSaysWhy) {
  CommandResult r = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", Dsn("connect_only")}});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(r.output.find(" failed "), std::string::npos) << r.output;
  for (const auto& [collector, reason] : kNeedPgMonitor) {
    std::string line = Line(r.output, collector);
    EXPECT_NE(line.find(" skipped "), std::string::npos) << line;
    EXPECT_NE(line.find(reason), std::string::npos) << line;
  }
  // What every role may read keeps working, e.g. pg_stat_archiver and its own database's tablespace.
  EXPECT_NE(Line(r.output, "archiver").find(" ok "), std::string::npos) << r.output;
  EXPECT_NE(Line(r.output, "tablespace_size").find(" ok "), std::string::npos) << r.output;

  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", Dsn("connect_only")}});
  HttpResponse scrape = HttpGet(agent->url("/metrics"));
  ASSERT_EQ(scrape.status, 200);
  EXPECT_EQ(SampleValue(scrape.body, "pg_up"), 1) << scrape.body;
  EXPECT_TRUE(SampleValue(scrape.body, "pg_archiver_archived_total").has_value()) << scrape.body;
  EXPECT_TRUE(SampleValue(scrape.body, "pg_tablespace_size_bytes{tablespace=\"pg_default\",path=\"\"}").has_value());
  EXPECT_FALSE(SampleValue(scrape.body, "pg_tablespace_size_bytes{tablespace=\"pg_global\",path=\"\"}").has_value())
      << "needs pg_read_all_stats: left out, not an error";
  EXPECT_EQ(CountSamples(scrape.body, "pg_filesystem_visible"), 0);
  EXPECT_EQ(CountSamples(scrape.body, "pg_wal_directory_size_bytes"), 0);
  HttpResponse landing = HttpGet(agent->url("/"));
  for (const auto& [collector, reason] : kNeedPgMonitor) {
    EXPECT_NE(landing.body.find(reason), std::string::npos) << collector << " in\n" << landing.body;
  }
}

TEST_F(ManagedRoles, PgMonitorRoleRunsTheDiskAndArchiveCollectors) {
  CommandResult r = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", Dsn("monitor")}});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(r.output.find(" failed "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("needs the privileges"), std::string::npos) << r.output;
  for (const auto& [collector, reason] : kNeedPgMonitor) {
    EXPECT_NE(Line(r.output, collector).find(" ok "), std::string::npos) << r.output;
  }
  // pg_wal is in the 0700 data directory, but this agent runs as root (as tests do in CI) and sees it.
  EXPECT_EQ(Line(r.output, "filesystem").find("cannot see"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace pgpulse::testing
