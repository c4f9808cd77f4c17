// Every shipped collector against a real server: as a role with nothing but
// pg_monitor, and with every optional collector and extension switched on.

#include <gtest/gtest.h>

#include "collectors/definition.h"
#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"

namespace pgpulse::testing {
namespace {

class EveryCollector : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    SharedServerTest::SetUpTestSuite();
    pg_->Exec(
        "CREATE EXTENSION IF NOT EXISTS pgstattuple;"
        "CREATE EXTENSION IF NOT EXISTS pg_buffercache;"
        "CREATE TABLE sample (id int PRIMARY KEY, payload text);"
        "INSERT INTO sample SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;"
        "CREATE SEQUENCE sample_seq;"
        "SELECT nextval('sample_seq');"
        "ANALYZE;"
        "CREATE ROLE monitor_only LOGIN;"
        "GRANT pg_monitor TO monitor_only;");
  }
  static std::string Dsn(const std::string& user) {
    return "postgresql://" + user + "@127.0.0.1:" + std::to_string(pg_->port()) + "/postgres";
  }
};

TEST_F(EveryCollector, DefaultCollectorsWorkWithOnlyPgMonitor) {
  CommandResult r = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", Dsn("monitor_only")}});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(r.output.find(" failed "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("up, PostgreSQL"), std::string::npos) << r.output;
}

TEST_F(EveryCollector, EveryVariantForThisVersionRunsWithOptionalCollectorsOn) {
  collectors::LoadResult defs = collectors::LoadDefinitions(collectors::EmbeddedDefinitions());
  ASSERT_TRUE(defs.ok());
  std::string enable;
  for (const auto& d : defs.definitions) {
    if (!d.enabled) enable += (enable.empty() ? "" : ", ") + d.name;
  }
  std::string cfg = WriteTempFile("every.yml", "targets:\n  - name: main\n    dsn: \"" + Dsn("postgres") +
                                                   "\"\ncollectors:\n  enable: [" + enable + "]\n");
  CommandResult r = AgentProcess::Run({"check", "--connect", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(r.output.find(" failed "), std::string::npos) << r.output;
  int version = std::stoi(pg_->Query("SHOW server_version_num"));
  for (const auto& d : defs.definitions) {
    // PgBouncer console collectors are not planned for a PostgreSQL target at all (pgbouncer_test.cc runs them).
    if (d.target != collectors::TargetKind::Postgres) continue;
    // Skipped is right only for a role mismatch (this is a primary) or no variant for this version.
    bool applies = d.VariantFor(version) != nullptr && d.required_role != collectors::Role::Replica;
    size_t at = r.output.find("\n" + d.name + " ");
    ASSERT_NE(at, std::string::npos) << d.name << " missing from:\n" << r.output;
    std::string line = r.output.substr(at + 1, r.output.find('\n', at + 1) - at - 1);
    // A collector with run_in may have nowhere to run (no vacuum, no subscription here): skipped, saying
    // why. The version matrix runs those collectors' SQL directly on every major.
    if (applies && !d.run_in_sql.empty() && line.find(" skipped ") != std::string::npos) {
      EXPECT_NE(line.find("its run_in query"), std::string::npos) << line;
    } else if (applies) {
      EXPECT_NE(line.find(" ok "), std::string::npos) << line;
    }
  }

  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  HttpResponse scrape = HttpGet(agent->url("/metrics"));
  ASSERT_EQ(scrape.status, 200);
  std::string path = WriteTempFile("every.prom", scrape.body);
  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  CommandResult lint = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(lint.exit_status, 0) << lint.output;
  EXPECT_EQ(lint.output, "") << lint.output;
}

}  // namespace
}  // namespace pgpulse::testing
