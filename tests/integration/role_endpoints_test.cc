// /primary, /replica and /read (issue #16): against a real primary and a real streaming standby,
// a server that accepts connections and never answers, and a real HAProxy that routes to the
// primary and follows a promotion.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "tests/harness/agent_process.h"
#include "tests/harness/haproxy_server.h"
#include "tests/harness/http_client.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

// A primary with a streaming standby that has replayed a commit, each with an agent beside it.
struct Pair {
  std::unique_ptr<PostgresServer> primary, standby;
  std::unique_ptr<AgentProcess> primary_agent, standby_agent;

  static Pair Start() {
    Pair p;
    p.primary = PostgresServer::Start();
    p.standby = PostgresServer::StartStandbyOf(*p.primary, {"cluster_name = 'standby1'"});
    p.primary->Exec("CREATE TABLE filler (id int)");
    const std::string lsn = p.primary->Query("SELECT pg_current_wal_lsn()");
    EXPECT_TRUE(
        PollUntil([&] { return p.standby->Query("SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'") == "t"; }, 30))
        << p.standby->Log();
    p.primary_agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", p.primary->uri()}});
    p.standby_agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", p.standby->uri()}});
    return p;
  }
  ~Pair() {
    // Agents first, then the standby before its primary (see PostgresServer::StartStandbyOf).
    primary_agent.reset();
    standby_agent.reset();
    standby.reset();
    primary.reset();
  }
  Pair() = default;
  Pair(Pair&&) = default;
};

// A TCP listener that completes handshakes (the kernel does) and never reads: a hung server.
struct HungServer {
  int fd = -1;
  int port = 0;
  HungServer() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    EXPECT_EQ(listen(fd, 64), 0);
  }
  ~HungServer() { close(fd); }
};

TEST(RoleEndpointsTest, PrimaryAndStandbyAnswerTheirRoles) {
  Pair p = Pair::Start();
  auto get = [](const AgentProcess& a, const std::string& path) { return HttpGet(a.url(path), {}, 10); };
  HttpResponse r = get(*p.primary_agent, "/primary");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "primary\n");
  EXPECT_EQ(get(*p.primary_agent, "/read").status, 200);
  r = get(*p.primary_agent, "/replica");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not a replica: the server is a primary\n");

  r = get(*p.standby_agent, "/primary");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not the primary: the server is a replica (in recovery)\n");
  r = get(*p.standby_agent, "/replica");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.rfind("replica, replay lag ", 0), 0u) << r.body;
  EXPECT_EQ(get(*p.standby_agent, "/read").status, 200);
  // An idle primary: the standby has replayed everything it received, so its lag is 0 however
  // long ago the last commit was.
  EXPECT_EQ(get(*p.standby_agent, "/replica?max_lag=1").body, "replica, replay lag 0.0s\n");

  // HEAD answers the same status without a body.
  r = HttpRequest("HEAD", p.standby_agent->url("/primary"), {}, "", 10);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(HttpRequest("HEAD", p.primary_agent->url("/primary"), {}, "", 10).status, 200);

  // Replay paused while the primary commits: the lag grows past max_lag, and /read (for a
  // replica) follows it; resumed, both answer 200 again.
  p.standby->Exec("SELECT pg_wal_replay_pause()");
  p.primary->Exec("INSERT INTO filler VALUES (1)");
  EXPECT_TRUE(PollUntil([&] { return get(*p.standby_agent, "/replica?max_lag=0.5").status == 503; }, 20));
  r = get(*p.standby_agent, "/read?max_lag=0.5");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("exceeds max_lag 0.5s"), std::string::npos) << r.body;
  EXPECT_EQ(get(*p.standby_agent, "/replica").status, 200) << "without max_lag, lag does not matter";
  p.standby->Exec("SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(PollUntil([&] { return get(*p.standby_agent, "/replica?max_lag=0.5").status == 200; }, 20));
  EXPECT_EQ(get(*p.primary_agent, "/read?max_lag=0").status, 200) << "max_lag does not apply to a primary";
}

TEST(RoleEndpointsTest, TargetsBadParametersAndAHungServer) {
  auto pg = PostgresServer::Start();
  HungServer hung;
  const std::string cfg = WriteTempFile("roles.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() +
                                                         "\"\n  - name: hung\n    dsn: \"host=127.0.0.1 port=" +
                                                         std::to_string(hung.port) + " user=postgres\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  EXPECT_EQ(HttpGet(agent->url("/primary?target=main"), {}, 10).status, 200);
  HttpResponse r = HttpGet(agent->url("/primary"), {}, 10);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, "400 /primary needs ?target=NAME: this agent has several targets\n");
  r = HttpGet(agent->url("/replica?target=nope"), {}, 10);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "404 no target named 'nope' in the config\n");
  r = HttpGet(agent->url("/replica?target=main&max_lag=soon"), {}, 10);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, "400 max_lag must be a number of seconds (e.g. 10 or 0.5), got 'soon'\n");
  EXPECT_EQ(HttpGet(agent->url("/primary?target=main&max_lag=1"), {}, 10).status, 400);
  EXPECT_EQ(HttpGet(agent->url("/primary?target=main&target=hung"), {}, 10).status, 400);
  EXPECT_EQ(HttpRequest("POST", agent->url("/primary?target=main"), {}, "", 10).status, 405);

  // The hung server: 503 within the bound (2.5 s), every time, and other targets unaffected.
  for (int i = 0; i < 2; ++i) {
    auto start = Clock::now();
    r = HttpGet(agent->url("/read?target=hung"), {}, 10);
    const double took = SecondsSince(start);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body.rfind("unknown: ", 0), 0u) << r.body;
    EXPECT_LT(took, 3.5) << r.body;
    EXPECT_EQ(HttpGet(agent->url("/primary?target=main"), {}, 10).status, 200);
  }
  // A server that stops: 503 once the cached fact (at most 2 s old) is gone.
  pg->Stop();
  EXPECT_TRUE(PollUntil([&] { return HttpGet(agent->url("/primary?target=main"), {}, 10).status == 503; }, 10));
  r = HttpGet(agent->url("/primary?target=main"), {}, 10);
  EXPECT_NE(r.body.find("unknown: cannot connect"), std::string::npos) << r.body;
  pg->StartAgain();
  EXPECT_TRUE(PollUntil([&] { return HttpGet(agent->url("/primary?target=main"), {}, 10).status == 200; }, 15));
}

// Which server a connection through HAProxy reaches: its port and whether it is in recovery;
// "" when no connection could be made.
std::string Reached(const HaproxyServer& haproxy) {
  try {
    pqxx::connection c(haproxy.dsn());
    pqxx::work w(c);
    pqxx::row row = w.exec1("SELECT inet_server_port(), pg_is_in_recovery()");
    return row[0].as<std::string>() + (row[1].as<bool>() ? " standby" : " primary");
  } catch (const std::exception&) {
    return "";
  }
}

// Until HAProxy's checks have run, a server keeps the state it had (at start: up), and round
// robin sends every other connection to it: true once `want` is reached 6 times in a row
// (3 rounds over both servers).
bool Settles(const HaproxyServer& haproxy, const std::string& want, double timeout_seconds) {
  int in_a_row = 0;
  return PollUntil(
      [&] {
        in_a_row = Reached(haproxy) == want ? in_a_row + 1 : 0;
        return in_a_row >= 6;
      },
      timeout_seconds, 0.05);
}

TEST(HaproxyTest, RoutesToThePrimaryAndFollowsAPromotion) {
  if (!HaproxyServer::Installed())
    GTEST_SKIP() << "haproxy is not installed (Debian package haproxy; tests/deps.sh installs it)";
  Pair p = Pair::Start();
  auto haproxy = HaproxyServer::Start(
      {{"pg1", p.primary->port(), p.primary_agent->port()}, {"pg2", p.standby->port(), p.standby_agent->port()}},
      "GET /primary");
  const std::string primary = std::to_string(p.primary->port()) + " primary";
  const std::string promoted = std::to_string(p.standby->port()) + " primary";
  // Both servers start up; the checks mark pg2 down (fall 2): poll until HAProxy routes to pg1 only.
  EXPECT_TRUE(Settles(*haproxy, primary, 20)) << haproxy->Log();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Reached(*haproxy), primary) << "never to the standby";

  // Fence the old primary (stopped), promote the standby: HAProxy follows once the checks say so.
  p.primary->Stop();
  p.standby->Exec("SELECT pg_promote()");
  EXPECT_TRUE(Settles(*haproxy, promoted, 30)) << haproxy->Log();
  EXPECT_EQ(HttpGet(p.standby_agent->url("/primary"), {}, 10).status, 200);
  EXPECT_EQ(HttpGet(p.primary_agent->url("/primary"), {}, 10).status, 503);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(Reached(*haproxy), promoted);
}

}  // namespace
}  // namespace pgpulse::testing
