// Faults an SRE meets: a server that crashes mid-scrape, connection slots all
// taken, a catalog locked by someone else.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <future>
#include <pqxx/pqxx>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

// pg_up once it has the value `want`, or its last value after `seconds`.
std::optional<double> PollUp(const AgentProcess& agent, double want, double seconds) {
  std::optional<double> up;
  PollUntil([&] { return (up = SampleValue(Scrape(agent, 3), "pg_up")) == want; }, seconds, 0.3);
  return up;
}

TEST(Faults, ServerCrashingMidScrapeIsSurvivedAndRecoveredFromWithoutRestart) {
  auto pg = PostgresServer::Start();
  std::string defs = WriteTempFile("crash-defs/slow.yaml", R"(collectors:
  - name: slowish
    help: Slow enough for the crash to land inside it.
    timeout: 10s
    sql: SELECT pg_sleep(1.5) IS NULL AS v
    columns:
      v: {gauge: pg_test_slowish, help: Zero.}
)");
  std::string cfg = WriteConfigWithDefinitions("crash.yml", pg->uri(), defs);
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  EXPECT_EQ(SampleValue(Scrape(*agent, 8), "pg_up"), 1.0);

  auto scrape = std::async(std::launch::async, [&] { return HttpGet(agent->url("/metrics")); });
  // The crash must land while the scrape's slow collector runs.
  ASSERT_TRUE(PollUntil(
      [&] {
        return pg->Query(
                   "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1.5)%' AND state = 'active'"
                   " AND pid <> pg_backend_pid()") != "0";
      },
      10, 0.02))
      << "the agent's slowish query never started";
  // SIGQUIT is PostgreSQL's immediate shutdown: every backend dies at once, as in a crash.
  std::ifstream pidfile(pg->dir() + "/data/postmaster.pid");
  pid_t postmaster = 0;
  pidfile >> postmaster;
  ASSERT_GT(postmaster, 0);
  ASSERT_EQ(kill(postmaster, SIGQUIT), 0);
  HttpResponse during = scrape.get();
  EXPECT_EQ(during.status, 200);
  EXPECT_EQ(SampleValue(during.body, "pgpulse_collector_success{collector=\"slowish\",target=\"main\"}"), 0.0);
  EXPECT_TRUE(PollUntil([&] { return kill(postmaster, 0) != 0; }, 10));
  EXPECT_EQ(PollUp(*agent, 0.0, 33), 0.0);

  pg->StartAgain();
  EXPECT_EQ(PollUp(*agent, 1.0, 200), 1.0);
  std::string body = Scrape(*agent, 8);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"slowish\",target=\"main\"}"), 1.0) << body;
  EXPECT_TRUE(agent->Running());
}

TEST(Faults, AllConnectionSlotsTakenIsAClearErrorThenRecovers) {
  auto pg = PostgresServer::Start({"max_connections = 6", "superuser_reserved_connections = 1"});
  pg->Exec("CREATE ROLE monitor LOGIN; GRANT pg_monitor TO monitor; CREATE ROLE filler LOGIN");
  std::vector<std::unique_ptr<pqxx::connection>> held;
  const std::string filler = "host=127.0.0.1 port=" + std::to_string(pg->port()) + " user=filler dbname=postgres";
  for (int i = 0; i < 5; ++i) held.push_back(std::make_unique<pqxx::connection>(filler));  // 6 - 1 reserved
  std::string dsn = "postgresql://monitor@127.0.0.1:" + std::to_string(pg->port()) + "/postgres";
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", dsn}});
  std::string body = Scrape(*agent, 3);
  EXPECT_EQ(SampleValue(body, "pg_up"), 0.0) << body;
  std::string landing = HttpGet(agent->url("/")).body;
  EXPECT_NE(landing.find("remaining connection slots are reserved"), std::string::npos) << landing;
  EXPECT_NE(agent->Log().find("remaining connection slots are reserved"), std::string::npos);

  held.clear();
  EXPECT_EQ(PollUp(*agent, 1.0, 200), 1.0);
  EXPECT_TRUE(agent->Running());
}

TEST(Faults, CatalogLockedBySomeoneElseTimesOutOnTheServerAndTheScrapeAnswers) {
  auto pg = PostgresServer::Start();
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg->uri()}});
  EXPECT_EQ(SampleValue(Scrape(*agent, 8), "pg_up"), 1.0);
  pqxx::connection holder(pg->dsn());
  pqxx::work tx(holder);
  tx.exec("LOCK TABLE pg_database IN ACCESS EXCLUSIVE MODE");

  auto start = Clock::now();
  HttpResponse r = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 6"});
  EXPECT_LT(SecondsSince(start), 6.0);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(SampleValue(r.body, "pg_up"), 1.0) << r.body;
  int failed = 0;
  std::istringstream lines(r.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("pgpulse_collector_success{", 0) == 0 && line.back() == '0') ++failed;
  }
  EXPECT_GE(failed, 1) << "collectors reading pg_database should have timed out";
  // Nothing of the agent's is left waiting on the lock: the server cancelled it. (Asked through the
  // lock holder's own session: a new connection would itself queue behind the pg_database lock.)
  // (pg_stat_activity is a snapshot per transaction: cleared before each look.)
  int waiting = -1;
  EXPECT_TRUE(PollUntil(
      [&] {
        tx.exec("SELECT pg_stat_clear_snapshot()");
        waiting = tx.exec1(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse'"
                        " AND wait_event_type = 'Lock'")[0]
                      .as<int>();
        return waiting == 0;
      },
      10));
  EXPECT_EQ(waiting, 0);
  tx.abort();
  std::string after = Scrape(*agent, 8);
  std::istringstream again(after);
  for (std::string line; std::getline(again, line);) {
    if (line.rfind("pgpulse_collector_success{", 0) == 0) {
      EXPECT_EQ(line.back(), '1') << line;
    }
  }
}

}  // namespace
}  // namespace pgpulse::testing
