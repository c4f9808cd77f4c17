// A scrape larger than a few megabytes is sent as it is rendered (chunked, gzip as one stream),
// not built whole in memory; a normal scrape keeps its Content-Length. Real agent, real HTTP.

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"

namespace pgpulse::testing {
namespace {

constexpr int kRows = 60000;  // about 7 MB of text: past the 4 MiB kept whole

std::string WideConfig(const PostgresServer& pg) {
  std::string file = WriteTempFile("wide-defs/wide.yaml", R"(collectors:
  - name: wide
    help: Many long series, as a database of tens of thousands of tables gives.
    max_series: 100000
    sql: >-
      SELECT 'series_' || g || '_' || repeat('x', 60) AS item, g AS v FROM generate_series(1, )" +
                                                              std::to_string(kRows) + R"() AS g
    columns:
      item: label
      v: {gauge: pg_wide, help: The row number.}
)");
  return WriteTempFile("wide.yml", "targets:\n  - name: main\n    dsn: \"" + pg.uri() +
                                       "\"\ncollectors:\n  directories: [\"" + file.substr(0, file.rfind('/')) +
                                       "\"]\n");
}

// The pg_wide lines of an exposition, in order.
std::string WideLines(const std::string& exposition) {
  std::istringstream in(exposition);
  std::string line, out;
  while (std::getline(in, line))
    if (line.rfind("pg_wide", 0) == 0) out += line + "\n";
  return out;
}

class Streaming : public SharedServerTest {};

TEST_F(Streaming, ALargeScrapeIsSentChunkedAsOneGzipStreamAndMatchesThePlainOne) {
  auto agent = AgentProcess::Start({"--config.file=" + WideConfig(*pg_)});
  HttpResponse zipped = HttpGet(agent->url("/metrics"), {"Accept-Encoding: gzip"});
  ASSERT_EQ(zipped.status, 200);
  EXPECT_EQ(zipped.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(zipped.headers.count("content-length"), 0u);
  EXPECT_EQ(zipped.headers["content-encoding"], "gzip");
  const std::string text = Gunzip(zipped.body);  // throws unless one complete gzip stream
  EXPECT_EQ(CountSamples(text, "pg_wide"), kRows);
  EXPECT_EQ(SampleValue(text, "pg_up"), 1.0);
  EXPECT_EQ(CountSamples(text, "pgpulse_build_info"), 1) << "the exposition was cut short";
  EXPECT_EQ(text.back(), '\n');

  HttpResponse plain = HttpGet(agent->url("/metrics"));
  ASSERT_EQ(plain.status, 200);
  EXPECT_EQ(plain.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(plain.headers.count("content-encoding"), 0u);
  EXPECT_EQ(WideLines(plain.body), WideLines(text));
  EXPECT_EQ(CountSamples(plain.body, "pg_wide"), kRows);

  // The same agent's connection serves the next request after a chunked body (keep-alive).
  EXPECT_EQ(HttpGet(agent->url("/healthz")).status, 200);

  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  std::string path = WriteTempFile("wide.prom", text);
  CommandResult r = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(r.exit_status, 0) << r.output.substr(0, 500);
}

TEST_F(Streaming, ANormalScrapeAndAHeadRequestKeepTheirContentLength) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  for (const char* encoding : {"Accept-Encoding: gzip", "Accept-Encoding: identity"}) {
    HttpResponse r = HttpGet(agent->url("/metrics"), {encoding});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.headers.count("transfer-encoding"), 0u) << encoding;
    ASSERT_EQ(r.headers.count("content-length"), 1u) << encoding;
    EXPECT_EQ(std::stoul(r.headers["content-length"]), r.body.size()) << encoding;
  }
  HttpResponse head = HttpRequest("HEAD", agent->url("/metrics"));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers.count("transfer-encoding"), 0u);
  EXPECT_EQ(head.headers.count("content-length"), 1u);
  EXPECT_TRUE(head.body.empty());
}

}  // namespace
}  // namespace pgpulse::testing
