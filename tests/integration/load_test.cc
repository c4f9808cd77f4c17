// 200 concurrent scrapers for 60 s (wrk, loopback): no errors, bounded memory,
// and collections coalesced so the server sees a handful of queries, not one
// per request. Slow and greedy clients (half-open requests, hundreds of
// keep-alive connections) leave /healthz and scrapes answering.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <fstream>
#include <regex>
#include <filesystem>
#include <cstdio>
#include <thread>
#include <iterator>
#include <vector>
#include <algorithm>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
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
  std::string cfg = WriteConfigWithDefinitions("load.yml", pg->uri(), defs);
  // All 200 come from 127.0.0.1: lift the per-client limit, this measures coalescing and memory.
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--web.max-connections-per-client=0"});
  HttpGet(agent->url("/metrics"));  // warm up: connect, first collection
  long rss_before = RssKb(agent->pid());

  CommandResult wrk = RunCommand(
      {"wrk", "-t", "2", "-c", "200", "-d", "60s", "--timeout", "15s", "--latency", agent->url("/metrics")}, {}, 120);
  ASSERT_EQ(wrk.exit_status, 0) << wrk.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(wrk.output, m, std::regex(R"((\d+) requests in)"))) << wrk.output;
  long requests = std::stol(m[1]);
  EXPECT_GT(requests, 1000) << wrk.output;
  EXPECT_EQ(wrk.output.find("Non-2xx or 3xx responses"), std::string::npos) << wrk.output;
  EXPECT_EQ(wrk.output.find("Socket errors"), std::string::npos) << wrk.output;
  EXPECT_TRUE(agent->Running());

  long calls =
      std::stol(pg->Query("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                          " WHERE query LIKE '%load_marker_q%' AND query NOT LIKE '%pg_stat_statements%'"));
  // Concurrent scrapes share one collection: far fewer queries than requests.
  EXPECT_LT(calls * 8, requests) << calls << " collections for " << requests << " requests";
  long rss_after = RssKb(agent->pid());
#ifndef __SANITIZE_ADDRESS__  // ASan's quarantine and shadow memory make RSS meaningless
  EXPECT_LT(rss_after, std::max(rss_before * 4, 64L * 1024))
      << rss_before << " kB before, " << rss_after << " kB after";
#endif
  std::cout << "wrk: " << requests << " requests, " << calls << " collections, RSS " << rss_before << " -> "
            << rss_after << " kB\n"
            << wrk.output;
}

// Resident kB of the agent's thread stacks: the mappings that hold a thread's stack pointer, as
// /proc/PID/task/TID/syscall gives it (its second-to-last field) for a thread blocked in a call.
long ThreadStacksKb(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::vector<unsigned long> sps;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task")) {
    std::ifstream in(task.path() / "syscall");
    std::vector<std::string> fields;
    for (std::string f; in >> f;) fields.push_back(f);
    if (fields.size() >= 3) sps.push_back(std::stoul(fields[fields.size() - 2], nullptr, 16));
  }
  std::ifstream smaps(proc + "/smaps");
  long kb = 0;
  bool stack = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {
      stack = std::any_of(sps.begin(), sps.end(), [&](unsigned long sp) { return sp >= lo && sp < hi; });
    } else if (stack && line.rfind("Rss:", 0) == 0) {
      kb += std::stol(line.substr(4));
    }
  }
  return kb;
}

// CivetWeb hands each new connection to the worker that has waited longest, so a scraper that
// connects anew for every scrape (Prometheus does: its keep-alive ends between scrapes) goes
// through all 128 workers; each kept the stack pages its request touched, and RSS climbed by
// megabytes over the first few hundred scrapes. The agent gives those pages back when a
// connection closes: the workers' stacks after 400 more scrapes hold what they held after 30.
TEST(Load, ScrapesOnNewConnectionsLeaveNoStackBehind) {
  auto pg = PostgresServer::Start();
  std::string cfg = WriteTempFile("stacks.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  for (int i = 0; i < 30; ++i) ASSERT_EQ(HttpGet(agent->url("/metrics"), {"Connection: close"}).status, 200);
  const long stacks_before = ThreadStacksKb(agent->pid()), rss_before = RssKb(agent->pid());
  for (int i = 0; i < 400; ++i) ASSERT_EQ(HttpGet(agent->url("/metrics"), {"Connection: close"}).status, 200);
  const long stacks_after = ThreadStacksKb(agent->pid()), rss_after = RssKb(agent->pid());
  std::cout << "after 30 and 430 scrapes: thread stacks " << stacks_before << " -> " << stacks_after << " kB, RSS "
            << rss_before << " -> " << rss_after << " kB\n";
  ASSERT_GT(stacks_before, 0) << "no thread stack found in /proc/" << agent->pid() << "/smaps";
  EXPECT_LT(stacks_after - stacks_before, 256)
      << stacks_before << " kB after 30 scrapes, " << stacks_after << " after 430";
#ifndef PGPULSE_SANITIZED  // ASan's quarantine and shadow memory make RSS meaningless
  // Nor do the workers' caches of freed blocks (glibc's tcache, off in the agent) hold anything.
  EXPECT_LT(rss_after - rss_before, 1024) << rss_before << " kB after 30 scrapes, " << rss_after << " after 430";
#endif
}

// The agent runs with glibc's per-thread caches off (it starts itself again with GLIBC_TUNABLES
// set; main.cc says why), keeps an operator's other tunables, and hands what it runs (here a
// password_command) the environment it was started with.
TEST(Load, AgentRunsWithoutThreadCachesAndWhatItRunsInheritsNothing) {
  auto pg = PostgresServer::Start();
  const std::string seen = WriteTempFile("tunables-seen", "");
  const std::string command =
      WriteTempFile("print-env.sh",
                    "#!/bin/sh\necho \"tunables=${GLIBC_TUNABLES-unset} was=${PGPULSE_GLIBC_TUNABLES_WAS-unset}\" > '" +
                        seen + "'\necho unused-password\n");
  chmod(command.c_str(), 0755);
  const std::string cfg = WriteTempFile("tunables.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() +
                                                            "\"\n    password_command: [" + command + "]\n");
  const std::string operators = "glibc.malloc.mmap_threshold=262144";
  auto agent = AgentProcess::Start({"--config.file=" + cfg}, {{"GLIBC_TUNABLES", operators}});
  ASSERT_EQ(SampleValue(HttpGet(agent->url("/metrics")).body, "pg_up"), 1.0) << agent->Log();
  std::ifstream environ("/proc/" + std::to_string(agent->pid()) + "/environ");
  std::string env((std::istreambuf_iterator<char>(environ)), std::istreambuf_iterator<char>());
  // (glibc splits the value where it parses it: the ':' between the two is a NUL byte by now.)
  EXPECT_NE(env.find("GLIBC_TUNABLES=" + operators), std::string::npos) << "the operator's tunable is kept";
  EXPECT_NE(env.find("glibc.malloc.tcache_count=0"), std::string::npos) << "the agent runs as started again";
  std::ifstream in(seen);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "tunables=" + operators + " was=unset");
}

// A TCP connection from `source` (a loopback address) to 127.0.0.1:port; -1 on failure (errno says
// why). IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect, per destination, so thousands of
// reconnects from one source address do not run out of ports.
int ConnectFrom(const char* source, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

struct TimedGet {
  double seconds = 0;
  std::string response;  // status line, headers and body; "" if nothing came within 10 s, or why not
};

// One request on a fresh connection from `source`, timed from connect to the server closing it.
TimedGet GetFrom(const char* source, int port, const std::string& path) {
  auto start = std::chrono::steady_clock::now();
  TimedGet out;
  int fd = ConnectFrom(source, port);
  if (fd < 0) out.response = std::string("(connect failed: ") + std::strerror(errno) + ")";
  if (fd >= 0) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      out.response = std::string("(send failed: ") + std::strerror(errno) + ")";
    } else {
      pollfd p{fd, POLLIN, 0};
      char buf[65536];
      while (std::chrono::steady_clock::now() - start < std::chrono::seconds(10) && poll(&p, 1, 200) >= 0) {
        if (!(p.revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.response.append(buf, static_cast<size_t>(n));
      }
    }
    close(fd);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

// The issue #18 attack, bounded: 200 connections from 127.0.0.2 that send half a request and
// nothing more (re-opened as the agent drops them) and wrk holding 300 keep-alive connections
// from 127.0.0.1, while a scraper on 127.0.0.3 asks for /healthz and /metrics. Before the
// per-client cap and the short request timeout, /healthz went unanswered for the whole minute.
// Under the attack, /healthz (what a liveness probe asks) must answer within 1 s in the median
// round; a full scrape, which competes for the same two cores with wrk and the half-open clients,
// within 1.5 s; and no answer may take longer than 2.5 s. AddressSanitizer makes the agent's own
// work about three times slower: that pass checks the same shape with three times the bounds.
#ifdef PGPULSE_SANITIZED
constexpr double kScale = 3.0;
#else
constexpr double kScale = 1.0;
#endif
constexpr double kHealthzMedianBound = 1.0 * kScale, kMetricsMedianBound = 1.5 * kScale, kWorstBound = 2.5 * kScale;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

TEST(Load, SlowAndKeepAliveClientsLeaveHealthzAndScrapesAnswering) {
  auto pg = PostgresServer::Start();
  std::string cfg = WriteTempFile("slow.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});  // the default per-client limit
  ASSERT_EQ(HttpGet(agent->url("/metrics")).status, 200);      // warm up
  const int port = agent->port();

  std::atomic<bool> stop{false};
  std::atomic<long> half_open_opened{0};
  std::thread slow([&] {
    std::vector<int> fds;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      // Drop what the agent closed, then top up to 200 half-open requests.
      for (auto it = fds.begin(); it != fds.end();) {
        pollfd p{*it, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
          close(*it);
          it = fds.erase(it);
        } else {
          ++it;
        }
      }
      while (fds.size() < 200) {
        int fd = ConnectFrom("127.0.0.2", port);
        if (fd < 0) break;
        const char half[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
        send(fd, half, sizeof half - 1, MSG_NOSIGNAL);
        fds.push_back(fd);
        ++half_open_opened;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (int fd : fds) close(fd);
  });
  CommandResult wrk;
  std::thread greedy([&] {
    wrk = RunCommand({"wrk", "-t", "2", "-c", "300", "-d", "20s", "--timeout", "5s", agent->url("/metrics")}, {}, 60);
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));  // let both fill their connections

  double worst_healthz = 0, worst_metrics = 0;
  std::vector<double> healthz_seconds, metrics_seconds;
  int rounds = 0;
  std::vector<std::string> failures;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(12);
  for (; std::chrono::steady_clock::now() < until; ++rounds) {
    TimedGet h = GetFrom("127.0.0.3", port, "/healthz");
    TimedGet m = GetFrom("127.0.0.3", port, "/metrics");
    worst_healthz = std::max(worst_healthz, h.seconds);
    worst_metrics = std::max(worst_metrics, m.seconds);
    healthz_seconds.push_back(h.seconds);
    metrics_seconds.push_back(m.seconds);
    if (h.response.rfind("HTTP/1.1 200", 0) != 0) failures.push_back("healthz: " + h.response.substr(0, 80));
    if (m.response.rfind("HTTP/1.1 200", 0) != 0 || m.response.find("\npg_up 1\n") == std::string::npos)
      failures.push_back("metrics: " + m.response.substr(0, 80));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  slow.join();
  greedy.join();

  std::cout << "with 200 half-open and 300 keep-alive connections: " << rounds << " rounds, /healthz median "
            << Median(healthz_seconds) << " s, slowest " << worst_healthz << " s; /metrics median "
            << Median(metrics_seconds) << " s, slowest " << worst_metrics << " s; " << half_open_opened
            << " half-open connections opened\n"
            << wrk.output;
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << (failures.empty() ? "" : failures.front());
  EXPECT_GT(rounds, 5);
  EXPECT_LT(Median(healthz_seconds), kHealthzMedianBound);
  EXPECT_LT(Median(metrics_seconds), kMetricsMedianBound);
  EXPECT_LT(worst_healthz, kWorstBound);
  EXPECT_LT(worst_metrics, kWorstBound);
  // wrk itself got served too (from the connections its address may hold).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(wrk.output, m, std::regex(R"((\d+) requests in)"))) << wrk.output;
  EXPECT_GT(std::stol(m[1]), 100) << wrk.output;
  EXPECT_TRUE(agent->Running());
}

}  // namespace
}  // namespace pgpulse::testing

namespace pgpulse::testing {
namespace {

// Reads what the server sends on `fd` until it closes or `limit` passes; "" if nothing.
std::string ReadUntilClosed(int fd, std::chrono::milliseconds limit, bool& closed) {
  std::string got;
  closed = false;
  auto until = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      closed = true;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Sends one keep-alive request on `fd` and reads until the body is complete (Content-Length).
std::string KeepAliveGet(int fd, const std::string& path) {
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return "";
  std::string got;
  char buf[65536];
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    size_t end = got.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::smatch m;
      std::string head = got.substr(0, end);
      if (std::regex_search(head, m, std::regex(R"(Content-Length: (\d+))")) &&
          got.size() >= end + 4 + std::stoul(m[1]))
        return got;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// --web.max-connections-per-client=2: the address holding two connections gets a third answered
// 503 without a scrape, and one that never finishes its request closed long before the 5 s
// request timeout; another address is served meanwhile; a held connection closing frees a slot.
TEST(Load, ConnectionCapPerClientAddress) {
  auto pg = PostgresServer::Start();
  std::string cfg = WriteTempFile("cap.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--web.max-connections-per-client=2"});
  const int port = agent->port();

  int held[2];
  for (int& fd : held) {
    fd = ConnectFrom("127.0.0.4", port);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    EXPECT_EQ(KeepAliveGet(fd, "/healthz").rfind("HTTP/1.1 200", 0), 0u);
  }
  int third = ConnectFrom("127.0.0.4", port);
  ASSERT_GE(third, 0);
  std::string refused = KeepAliveGet(third, "/metrics");
  EXPECT_EQ(refused.rfind("HTTP/1.1 503", 0), 0u) << refused.substr(0, 200);
  EXPECT_NE(refused.find("too many connections from 127.0.0.4"), std::string::npos) << refused.substr(0, 200);
  EXPECT_EQ(refused.find("pg_up"), std::string::npos) << "a refused connection was scraped";
  close(third);

  int half = ConnectFrom("127.0.0.4", port);
  ASSERT_GE(half, 0);
  const char partial[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  send(half, partial, sizeof partial - 1, MSG_NOSIGNAL);
  auto sent = std::chrono::steady_clock::now();
  bool closed = false;
  ReadUntilClosed(half, std::chrono::seconds(3), closed);
  double after = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  EXPECT_TRUE(closed) << "a half-open connection over the cap still open after " << after << " s";
  EXPECT_LT(after, 1.0 * kScale);
  close(half);

  TimedGet other = GetFrom("127.0.0.5", port, "/metrics");
  EXPECT_EQ(other.response.rfind("HTTP/1.1 200", 0), 0u) << other.response.substr(0, 200);
  EXPECT_NE(other.response.find("\npg_up 1\n"), std::string::npos);

  // The held ones are still served, and closing one lets a new connection in.
  EXPECT_EQ(KeepAliveGet(held[0], "/healthz").rfind("HTTP/1.1 200", 0), 0u);
  close(held[1]);
  bool admitted = false;
  for (int attempt = 0; attempt < 50 && !admitted; ++attempt) {  // the agent sees the close shortly
    int again = ConnectFrom("127.0.0.4", port);
    ASSERT_GE(again, 0);
    admitted = KeepAliveGet(again, "/healthz").rfind("HTTP/1.1 200", 0) == 0;
    close(again);
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(admitted) << "a freed slot was never given to a new connection";
  close(held[0]);
  EXPECT_TRUE(agent->Running());
}

}  // namespace
}  // namespace pgpulse::testing
