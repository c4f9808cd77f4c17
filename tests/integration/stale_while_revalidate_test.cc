// Collectors with a ttl: a scrape never waits for their refresh. An expired result is served
// (with its age) while the agent refreshes it in the background, and a first run that outlasts
// the scrape's deadline is pending, not failed. Real agent, real PostgreSQL, real HTTP.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"

namespace pgpulse::testing {
namespace {

std::string Config(const PostgresServer& pg, const std::string& definitions) {
  std::string file = WriteTempFile("swr-defs/extra.yaml", definitions);
  return WriteTempFile("swr.yml", "targets:\n  - name: main\n    dsn: \"" + pg.uri() +
                                      "\"\ncollectors:\n  directories: [\"" + file.substr(0, file.rfind('/')) +
                                      "\"]\n");
}

// The agent's queries running on the server now (its connections are named pgpulse).
int AgentQueriesRunning(const PostgresServer& pg) {
  return std::stoi(
      pg.Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse' AND state = 'active'"));
}

class StaleWhileRevalidate : public SharedServerTest {};

TEST_F(StaleWhileRevalidate, AScrapeNeverWaitsForARefreshAndServesTheStaleResultWithItsAge) {
  pg_->Exec(
      "DROP TABLE IF EXISTS swr_control; CREATE TABLE swr_control (v int, pause float8);"
      "INSERT INTO swr_control VALUES (1, 0); GRANT SELECT ON swr_control TO PUBLIC");
  auto agent = AgentProcess::Start({"--config.file=" + Config(*pg_, R"(collectors:
  - name: swr
    help: Reads a value, after a pause the test sets.
    ttl: 1s
    timeout: 30s
    sql: SELECT v AS swr_value FROM swr_control, LATERAL (SELECT pg_sleep(pause)) AS p
    columns:
      swr_value: {gauge: pg_swr_value, help: The value.}
)")});
  const std::string age = "pgpulse_collector_last_success_timestamp_seconds{collector=\"swr\",target=\"main\"}";
  std::string body = Scrape(*agent, 10);
  ASSERT_EQ(SampleValue(body, "pg_swr_value"), 1.0) << body;
  const auto first = SampleValue(body, age);
  ASSERT_TRUE(first) << body;

  // The next refresh takes 3 s and reads 2.
  pg_->Exec("UPDATE swr_control SET v = 2, pause = 3");
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // past the ttl

  // The scrape that finds the result expired serves it as it was and starts the refresh.
  auto start = Clock::now();
  body = Scrape(*agent, 10);
  EXPECT_LT(SecondsSince(start), 1.0) << "the scrape waited for the refresh";
  EXPECT_EQ(SampleValue(body, "pg_swr_value"), 1.0) << body;
  EXPECT_EQ(SampleValue(body, age), first) << "the stale result is served with the time it was collected";
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);

  // While the refresh runs on the server, scrapes are answered at once, and the agent still
  // runs one query at a time.
  PollUntil([&] { return AgentQueriesRunning(*pg_) == 1; }, 2, 0.02);
  for (int i = 0; i < 3; ++i) {
    start = Clock::now();
    body = Scrape(*agent, 10);
    EXPECT_LT(SecondsSince(start), 1.0) << "scrape " << i << " waited for the refresh";
    EXPECT_EQ(SampleValue(body, "pg_swr_value"), 1.0);
    EXPECT_LE(AgentQueriesRunning(*pg_), 1);
  }
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("<td>cached</td>"), std::string::npos) << landing.body;

  // Then the refreshed value, with a newer time.
  body = ScrapeUntilValue(*agent, "pg_swr_value", 2.0, 15);
  EXPECT_EQ(SampleValue(body, "pg_swr_value"), 2.0) << body;
  ASSERT_TRUE(SampleValue(body, age));
  EXPECT_GT(*SampleValue(body, age), *first + 1);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"swr\",target=\"main\"}"), 1.0);
}

TEST_F(StaleWhileRevalidate, AFirstRunThatOutlastsTheDeadlineIsPendingNotFailed) {
  auto agent = AgentProcess::Start({"--config.file=" + Config(*pg_, R"(collectors:
  - name: slow_first
    help: Its first run takes 3 s; cached for an hour after.
    ttl: 1h
    timeout: 30s
    sql: SELECT 5 AS slow_first_marker FROM pg_sleep(3)
    columns:
      slow_first_marker: {gauge: pg_slow_first, help: Five.}
)")});
  auto start = Clock::now();
  std::string body = Scrape(*agent, 1.5);
  EXPECT_LT(SecondsSince(start), 2.0) << "the scrape waited past its deadline";
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << body;
  EXPECT_GE(CountSamples(body, "pg_connections"), 1) << "the collectors without a ttl are served";
  EXPECT_FALSE(SampleValue(body, "pg_slow_first"));
  EXPECT_NE(SampleValue(body, "pgpulse_collector_success{collector=\"slow_first\",target=\"main\"}"), 0.0)
      << "a pending first run is not a failure";
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("<td>pending</td>"), std::string::npos) << landing.body;

  // The run goes on in the background and is served once done, without running again.
  body = ScrapeUntilValue(*agent, "pg_slow_first", 5.0, 15);
  EXPECT_EQ(SampleValue(body, "pg_slow_first"), 5.0) << body;
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"slow_first\",target=\"main\"}"), 1.0);
  EXPECT_EQ(pg_->Query("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE "
                       "'%slow_first_marker%' AND query NOT LIKE '%pg_stat_statements%'"),
            "1");
}

}  // namespace
}  // namespace pgpulse::testing
