// 200 concurrent scrapers for 60 s (wrk, loopback): no errors, bounded memory,
// and collections coalesced so the server sees a handful of queries, not one
// per request.

#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

TEST(Load, TwoHundredConcurrentScrapersForAMinute) {
  auto pg = PostgresServer::Start();
  std::string defs = WriteTempFile("load-defs/marker.yaml", R"(collectors:
  - name: load_marker
    help: Counts how often collections reach the server.
    sql: SELECT 1 AS load_marker_q
    columns:
      load_marker_q: {gauge: pg_test_load_marker, help: One.}
)");
  std::string cfg = WriteTempFile("load.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() +
                                                  "\"\ncollectors:\n  directories: [\"" +
                                                  defs.substr(0, defs.rfind('/')) + "\"]\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  HttpGet(agent->url("/metrics"));  // warm up: connect, first collection
  long rss_before = RssKb(agent->pid());

  CommandResult wrk = RunCommand({"wrk", "-t", "2", "-c", "200", "-d", "60s", "--timeout", "15s", "--latency",
                                  agent->url("/metrics")},
                                 {}, 120);
  ASSERT_EQ(wrk.exit_status, 0) << wrk.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(wrk.output, m, std::regex(R"((\d+) requests in)"))) << wrk.output;
  long requests = std::stol(m[1]);
  EXPECT_GT(requests, 1000) << wrk.output;
  EXPECT_EQ(wrk.output.find("Non-2xx or 3xx responses"), std::string::npos) << wrk.output;
  EXPECT_EQ(wrk.output.find("Socket errors"), std::string::npos) << wrk.output;
  EXPECT_TRUE(agent->Running());

  long calls = std::stol(pg->Query("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                                   " WHERE query LIKE '%load_marker_q%' AND query NOT LIKE '%pg_stat_statements%'"));
  // Concurrent scrapes share one collection: far fewer queries than requests.
  EXPECT_LT(calls * 8, requests) << calls << " collections for " << requests << " requests";
  long rss_after = RssKb(agent->pid());
#ifndef __SANITIZE_ADDRESS__  // ASan's quarantine and shadow memory make RSS meaningless
  EXPECT_LT(rss_after, std::max(rss_before * 4, 64L * 1024)) << rss_before << " kB before, " << rss_after << " kB after";
#endif
  std::cout << "wrk: " << requests << " requests, " << calls << " collections, RSS " << rss_before << " -> "
            << rss_after << " kB\n"
            << wrk.output;
}

}  // namespace
}  // namespace pgpulse::testing
