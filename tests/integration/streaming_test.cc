// A scrape larger than a few megabytes is sent as it is rendered (chunked, gzip as one stream),
// not built whole in memory; a normal scrape keeps its Content-Length. Real agent, real HTTP.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// Opens a connection, asks for /metrics, reads the first `bytes` of the answer and hangs up with a
// reset (SO_LINGER 0), as a scraper killed mid-body does. False if the agent sent less.
bool HangUpAfter(int port, const std::string& encoding, size_t bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool got = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: " + encoding + "\r\n\r\n";
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    size_t read = 0;
    char buffer[4096];
    for (ssize_t n; read < bytes && (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) read += static_cast<size_t>(n);
    got = read >= bytes;
  }
  linger reset{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  close(fd);
  return got;
}

TEST_F(Streaming, ClientsThatHangUpMidBodyLeaveTheAgentServingWholeBodies) {
  auto agent = AgentProcess::Start({"--config.file=" + WideConfig(*pg_)});
  ASSERT_EQ(HttpGet(agent->url("/metrics")).status, 200);  // the wide result is cached from here on
  for (int i = 0; i < 6; ++i) {
    // 64 KiB of a body of several MB: the agent is mid-stream (compressing, or sending) when it goes.
    EXPECT_TRUE(HangUpAfter(agent->port(), i % 2 ? "identity" : "gzip", 64 * 1024)) << "hang-up " << i;
  }
  HttpResponse zipped = HttpGet(agent->url("/metrics"), {"Accept-Encoding: gzip"});
  ASSERT_EQ(zipped.status, 200);
  const std::string text = Gunzip(zipped.body);
  EXPECT_EQ(CountSamples(text, "pg_wide"), kRows);
  EXPECT_EQ(CountSamples(text, "pgpulse_build_info"), 1) << "the exposition was cut short";
  EXPECT_EQ(CountSamples(HttpGet(agent->url("/metrics")).body, "pg_wide"), kRows);
  EXPECT_TRUE(agent->Running());
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
