// PgBouncer targets: a real pgbouncer (Debian package) in front of a throwaway PostgreSQL,
// scraped by the real agent next to the PostgreSQL target itself.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <pqxx/pqxx>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/pgbouncer_server.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"

namespace pgpulse::testing {
namespace {

const std::string kPool = "{target=\"bouncer\",database=\"postgres\",user=\"postgres\"}";

std::string Config(const PostgresServer& pg, const PgBouncerServer& bouncer) {
  // The console target is found by its DSN's dbname; no type key needed.
  return "targets:\n"
         "  - name: bouncer\n"
         "    dsn: \"" +
         bouncer.admin_dsn() +
         "\"\n"
         "  - name: pg\n"
         "    dsn: \"" +
         pg.dsn() + "\"\n";
}

class PgBouncerTest : public SharedServerTest {};

TEST_F(PgBouncerTest, ExhaustedPoolShowsWaitingClientsAndGrowingMaxWait) {
  auto bouncer = PgBouncerServer::Start(*pg_, {2, "session", 100});
  auto agent = AgentProcess::Start({"--config.file=" + WriteTempFile("bouncer.yml", Config(*pg_, *bouncer))});

  std::string idle = Scrape(*agent);
  EXPECT_EQ(SampleValue(idle, "pgbouncer_up{target=\"bouncer\"}"), 1) << idle;
  EXPECT_EQ(SampleValue(idle, "pgbouncer_info{target=\"bouncer\",version=\"1.18.0\"}"), 1);
  EXPECT_EQ(SampleValue(idle, "pg_up{target=\"pg\"}"), 1);
  EXPECT_FALSE(SampleValue(idle, "pg_up{target=\"bouncer\"}")) << "a console is not a PostgreSQL server";
  EXPECT_FALSE(SampleValue(idle, "pgbouncer_up{target=\"pg\"}"));
  EXPECT_EQ(SampleValue(idle, "pgbouncer_config_max_client_connections{target=\"bouncer\"}"), 100);
  EXPECT_EQ(SampleValue(idle, "pgbouncer_config_default_pool_size{target=\"bouncer\"}"), 2);
  EXPECT_EQ(SampleValue(idle, "pgbouncer_database_pool_size{target=\"bouncer\",database=\"postgres\"}"), 2);
  EXPECT_EQ(SampleValue(idle, "pgbouncer_lists_used_clients{target=\"bouncer\"}"), 1)
      << "the agent's own console connection";
  // Every collector on both targets ran cleanly: neither ran the other's definitions.
  EXPECT_EQ(idle.find("pgpulse_collector_success{") == std::string::npos, false);
  for (size_t at = idle.find("\npgpulse_collector_success{"); at != std::string::npos;
       at = idle.find("\npgpulse_collector_success{", at + 1)) {
    std::string line = idle.substr(at + 1, idle.find('\n', at + 1) - at - 1);
    EXPECT_EQ(line.substr(line.size() - 2), " 1") << line;
    EXPECT_EQ(line.find("collector=\"pgbouncer_") != std::string::npos,
              line.find("target=\"bouncer\"") != std::string::npos)
        << line;
  }

  // Six clients on a pool of two: two run pg_sleep, four wait for a server connection.
  const std::string pooled = bouncer->pooled_dsn();
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([pooled] {
      PGconn* c = PQconnectdb((pooled + " connect_timeout=10").c_str());
      if (PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, "SELECT pg_sleep(3)"));
      PQfinish(c);
    });
  }
  // Until the pool is settled: two clients served, four waiting (while PgBouncer still logs in
  // its two server connections, all clients can show as waiting and maxwait as 0).
  std::string first;
  const auto settling = Clock::now();
  do {
    first = Scrape(*agent);
    if (SampleValue(first, "pgbouncer_pool_client_waiting_connections" + kPool) == 4 &&
        SampleValue(first, "pgbouncer_pool_client_active_connections" + kPool) == 2 &&
        SampleValue(first, "pgbouncer_pool_max_wait_seconds" + kPool).value_or(0) > 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (SecondsSince(settling) < 2.5);
  EXPECT_EQ(SampleValue(first, "pgbouncer_pool_client_waiting_connections" + kPool), 4) << first;
  EXPECT_EQ(SampleValue(first, "pgbouncer_pool_client_active_connections" + kPool), 2);
  EXPECT_EQ(SampleValue(first, "pgbouncer_pool_server_active_connections" + kPool), 2);
  EXPECT_EQ(SampleValue(first,
                        "pgbouncer_pool_mode_info{target=\"bouncer\",database=\"postgres\",user=\"postgres\","
                        "pool_mode=\"session\"}"),
            1);
  auto wait1 = SampleValue(first, "pgbouncer_pool_max_wait_seconds" + kPool);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  std::string second = Scrape(*agent);
  auto wait2 = SampleValue(second, "pgbouncer_pool_max_wait_seconds" + kPool);
  ASSERT_TRUE(wait1 && wait2) << second;
  // Microseconds are added to maxwait's whole seconds, so the growth shows below one second.
  EXPECT_GT(*wait1, 0);
  EXPECT_GE(*wait2 - *wait1, 0.5) << "maxwait " << *wait1 << " then " << *wait2;
  EXPECT_LT(*wait2, 3.5);
  EXPECT_EQ(SampleValue(second, "pgbouncer_pool_client_waiting_connections" + kPool), 4) << second;
  for (auto& t : clients) t.join();

  std::string after = ScrapeUntilValue(*agent, "pgbouncer_pool_client_waiting_connections" + kPool, 0, 3);
  EXPECT_EQ(SampleValue(after, "pgbouncer_pool_max_wait_seconds" + kPool), 0);
  auto queries = SampleValue(after, "pgbouncer_database_queries_total{target=\"bouncer\",database=\"postgres\"}");
  ASSERT_TRUE(queries);
  EXPECT_GE(*queries, 6);
  // PgBouncer 1.18 counts a query's time from when the client sent it, so the waits are in it too:
  // pairs finish after 3, 6 and 9 s, 36 s in all; the four waiters waited 3, 3, 6 and 6 s.
  auto query_seconds =
      SampleValue(after, "pgbouncer_database_query_time_seconds_total{target=\"bouncer\",database=\"postgres\"}");
  auto wait_seconds =
      SampleValue(after, "pgbouncer_database_client_wait_time_seconds_total{target=\"bouncer\",database=\"postgres\"}");
  ASSERT_TRUE(query_seconds && wait_seconds) << after;
  EXPECT_GE(*query_seconds, 6 * 3 - 1) << "at least the six pg_sleep(3), in seconds (PgBouncer counts microseconds)";
  EXPECT_LT(*query_seconds, 45);
  EXPECT_GE(*wait_seconds, 17) << "four clients waited 3 + 3 + 6 + 6 s";
  EXPECT_LT(*wait_seconds, 25);
}

TEST_F(PgBouncerTest, DownIsUpZeroWithAReasonThenRecovers) {
  auto bouncer = PgBouncerServer::Start(*pg_, {});
  auto agent = AgentProcess::Start({"--config.file=" + WriteTempFile("down.yml", Config(*pg_, *bouncer))});
  EXPECT_EQ(SampleValue(Scrape(*agent), "pgbouncer_up{target=\"bouncer\"}"), 1);

  bouncer->Stop();
  std::string down = Scrape(*agent);
  EXPECT_EQ(SampleValue(down, "pgbouncer_up{target=\"bouncer\"}"), 0) << down;
  EXPECT_EQ(SampleValue(down, "pg_up{target=\"pg\"}"), 1) << "one target down leaves the other alone";
  EXPECT_EQ(CountSamples(down, "pgbouncer_pool_client_waiting_connections"), 0) << "no stale pool samples";
  HttpResponse ready = HttpGet(agent->url("/readyz"));
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("target bouncer is not reachable: "), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("127.0.0.1"), std::string::npos) << "says what it could not reach: " << ready.body;

  bouncer->StartAgain();
  std::string back = ScrapeUntilValue(*agent, "pgbouncer_up{target=\"bouncer\"}", 1, 15);
  EXPECT_EQ(SampleValue(back, "pgbouncer_up{target=\"bouncer\"}"), 1) << back;
  EXPECT_EQ(SampleValue(back, "pgbouncer_lists_used_clients{target=\"bouncer\"}"), 1) << "collectors run again";
}

TEST_F(PgBouncerTest, HungConsoleCannotHangTheScrape) {
  auto bouncer = PgBouncerServer::Start(*pg_, {});
  auto agent = AgentProcess::Start({"--config.file=" + WriteTempFile("hung.yml", Config(*pg_, *bouncer))});
  EXPECT_EQ(SampleValue(Scrape(*agent), "pgbouncer_up{target=\"bouncer\"}"), 1);

  // Stopped, the kernel still takes our bytes on the open connection, but nothing answers.
  bouncer->Freeze();
  auto start = Clock::now();
  std::string hung = Scrape(*agent);
  const double took = SecondsSince(start);
  EXPECT_EQ(SampleValue(hung, "pgbouncer_up{target=\"bouncer\"}"), 0) << hung;
  EXPECT_EQ(SampleValue(hung, "pg_up{target=\"pg\"}"), 1);
  EXPECT_GE(took, 1.5) << "the 2 s client-side timeout, not an instant error";
  EXPECT_LT(took, 5) << "the scrape must not wait on a console that never answers";
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("timed out on the client"), std::string::npos) << landing.body;

  bouncer->Thaw();
  std::string back = ScrapeUntilValue(*agent, "pgbouncer_up{target=\"bouncer\"}", 1, 15);
  EXPECT_EQ(SampleValue(back, "pgbouncer_up{target=\"bouncer\"}"), 1) << back;
}

TEST_F(PgBouncerTest, CheckConnectAndExpositionAreClean) {
  auto bouncer = PgBouncerServer::Start(*pg_, {});
  CommandResult check = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", bouncer->admin_dsn()}});
  EXPECT_EQ(check.exit_status, 0) << check.output;
  EXPECT_NE(check.output.find("up, PgBouncer 1.18.0 (admin console)"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("pgbouncer_pools"), std::string::npos) << check.output;
  EXPECT_EQ(check.output.find("failed"), std::string::npos) << check.output;
  EXPECT_EQ(check.output.find("table_stats"), std::string::npos)
      << "PostgreSQL collectors are not listed: " << check.output;

  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", bouncer->admin_dsn()}});
  const std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pgbouncer_up"), 1) << body;
  const std::string path = WriteTempFile("pgbouncer_metrics.txt", body);
  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  CommandResult lint = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(lint.exit_status, 0) << lint.output;
  EXPECT_EQ(lint.output, "") << "no lint warnings either";
}

TEST_F(PgBouncerTest, BadTypeAndBadDefinitionAreRejectedWithPosition) {
  std::string cfg =
      WriteTempFile("badtype.yml", "targets:\n  - name: b\n    dsn: dbname=pgbouncer\n    type: bouncer\n");
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 1) << r.output;
  EXPECT_NE(r.output.find(cfg + ":4:11: target 'b'.type must be 'postgres' or 'pgbouncer', got 'bouncer'"),
            std::string::npos)
      << r.output;

  char tmpl[] = "/tmp/pgpulse-pgbdefs-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::ofstream(dir + "/bouncer.yaml") << "collectors:\n"
                                          "  - name: sneaky\n"
                                          "    help: h\n"
                                          "    target: pgbouncer\n"
                                          "    sql: SELECT pg_sleep(1)\n"
                                          "    columns: {x: {gauge: pgbouncer_sneaky, help: h}}\n";
  cfg = WriteTempFile("baddef.yml", "collectors:\n  directories: [\"" + dir + "\"]\n");
  r = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 1) << r.output;
  EXPECT_NE(r.output.find(dir + "/bouncer.yaml:5:10: collector 'sneaky': a pgbouncer collector's sql must be one "
                                "'SHOW <command>'"),
            std::string::npos)
      << r.output;
  std::filesystem::remove_all(dir);
}

// Through a transaction-pooling PgBouncer one client's consecutive transactions may reach
// different server connections, so a statement prepared on one is missing on the other.
// A pool of 2: hold one server connection while the agent prepares on the other, then swap.
TEST_F(PgBouncerTest, TransactionPoolingNeedsPreparedStatementsOff) {
  auto bouncer = PgBouncerServer::Start(*pg_, {2, "transaction", 100});
  auto hold = [&]() {
    auto c = std::make_unique<pqxx::connection>(bouncer->pooled_dsn());
    auto w = std::make_unique<pqxx::work>(*c);
    w->exec("SELECT 1");  // the transaction now owns a server connection
    return std::make_pair(std::move(c), std::move(w));
  };
  for (bool prepared : {true, false}) {
    SCOPED_TRACE(prepared ? "prepared_statements: true" : "prepared_statements: false");
    std::string cfg = WriteTempFile("pooled-" + std::to_string(prepared) + ".yml",
                                    "targets:\n  - name: main\n    dsn: \"" + bouncer->pooled_dsn() +
                                        "\"\n    prepared_statements: " + (prepared ? "true" : "false") + "\n");
    auto agent = AgentProcess::Start({"--config.file=" + cfg});
    // Server connections X and Y. A query's first run on the agent's connection reads it through
    // a cursor; from the second run on, a small result's query is a prepared statement, prepared
    // where that run lands. So: first run on Y, second (prepared) on X, third on Y again.
    auto x_holder = hold();
    std::string first = Scrape(*agent);  // on Y
    auto y_holder = hold();              // takes Y
    x_holder.second.reset();             // and frees X
    x_holder.first.reset();
    std::string prepare = Scrape(*agent);  // on X, which now has the statements
    x_holder = hold();                     // takes X
    y_holder.second.reset();               // and frees Y
    y_holder.first.reset();
    std::string second = Scrape(*agent);  // on Y, which does not
    const std::string ok = "pgpulse_collector_success{collector=\"connections\",target=\"main\"}";
    EXPECT_EQ(SampleValue(first, "pg_up"), 1.0) << first;
    EXPECT_EQ(SampleValue(first, ok), 1.0) << agent->Log();
    EXPECT_EQ(SampleValue(prepare, ok), 1.0) << agent->Log();
    EXPECT_EQ(SampleValue(second, "pg_up"), 1.0) << second;
    if (prepared) {
      EXPECT_EQ(SampleValue(second, ok), 0.0) << agent->Log();
      EXPECT_NE(agent->Log().find("then set prepared_statements: false on the target"), std::string::npos)
          << agent->Log();
    } else {
      EXPECT_EQ(SampleValue(second, ok), 1.0) << agent->Log();
      std::istringstream lines(second);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("pgpulse_collector_success{", 0) == 0) {
          EXPECT_EQ(line.substr(line.size() - 2), " 1") << "every collector works through the pool: " << line;
        }
      }
    }
  }
}

}  // namespace
}  // namespace pgpulse::testing
