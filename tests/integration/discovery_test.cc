// Database-scoped collectors across the databases of a server.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <optional>
#include <vector>
#include <thread>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

const char* kDefinitions = R"(collectors:
  - name: tables_per_db
    help: User tables in each database.
    scope: database
    sql: SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'
    columns:
      n: {gauge: pg_test_public_tables, help: Tables in schema public.}
  - name: needs_pgstattuple
    help: Runs only where pgstattuple is installed.
    scope: database
    requires: {extension: pgstattuple}
    sql: SELECT 1 AS v
    columns:
      v: {gauge: pg_test_has_pgstattuple, help: One.}
)";

// An agent over the databases `include` lists, with `definitions` beside the built-in collectors.
std::unique_ptr<AgentProcess> StartDiscovering(const PostgresServer& pg, const std::string& name,
                                               const char* definitions, const std::string& include) {
  const std::string cfg =
      WriteConfigWithDefinitions(name + ".yml", pg.uri(), WriteTempFile(name + "-defs/x.yaml", definitions),
                                 "    databases:\n      discover: true\n      include: " + include + "\n");
  return AgentProcess::Start({"--config.file=" + cfg});
}

// Issue #18: a connect to another database used the whole connect_timeout, past the scrape
// deadline, and the scrape came back as pg_up 0 alone although the main connection answered.
// With the postmaster stopped (SIGSTOP: existing backends go on, new connections hang), a newly
// discovered database cannot be reached; the scrape still serves the main database.
TEST(Discovery, AHangingConnectToAnotherDatabaseDoesNotLoseTheScrape) {
  auto pg = PostgresServer::Start();
  std::string defs_dir = WriteTempFile("hang-defs/fanout.yaml", kDefinitions);
  defs_dir = defs_dir.substr(0, defs_dir.rfind('/'));
  std::string cfg = WriteTempFile("hang.yml", "connect_timeout: 20s\ntargets:\n  - name: main\n    dsn: \"" +
                                                  pg->uri() +
                                                  "\"\n    databases:\n      discover: true\n"
                                                  "      include: ['late', postgres]\n      refresh: 1s\n"
                                                  "collectors:\n  directories: [\"" +
                                                  defs_dir + "\"]\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  ASSERT_EQ(SampleValue(HttpGet(agent->url("/metrics")).body, "pg_up"), 1.0);
  pg->Exec("CREATE DATABASE late");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past the discovery refresh
  std::ifstream pidfile(pg->dir() + "/data/postmaster.pid");
  pid_t postmaster = 0;
  pidfile >> postmaster;
  ASSERT_GT(postmaster, 0);
  ASSERT_EQ(kill(postmaster, SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { kill(pid, SIGCONT); }
  } resume{postmaster};
  auto start = std::chrono::steady_clock::now();
  std::string body = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 5"}).body;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << body.substr(0, 500);
  EXPECT_EQ(SampleValue(body, "pg_test_public_tables{datname=\"postgres\"}"), 0.0) << "the main database served";
  EXPECT_FALSE(SampleValue(body, "pg_test_public_tables{datname=\"late\"}"));
  EXPECT_LT(seconds, 5.0);
}

TEST(Discovery, CollectorsFanOutToDiscoveredDatabasesWithBoundedConnections) {
  auto pg = PostgresServer::Start();
  pg->Exec("CREATE DATABASE app_a");
  pg->Exec("CREATE DATABASE app_b");
  pg->Exec("CREATE DATABASE other_c");
  {
    pqxx::connection a("host=127.0.0.1 port=" + std::to_string(pg->port()) + " user=postgres dbname=app_a");
    pqxx::nontransaction tx(a);
    tx.exec("CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE EXTENSION pgstattuple");
  }
  std::string cfg = WriteConfigWithDefinitions("disc.yml", pg->uri(),
                                               WriteTempFile("disc-defs/fanout.yaml", kDefinitions),
                                               "    databases:\n      discover: true\n"
                                               "      include: ['app_.*', postgres]\n      refresh: 1s\n"
                                               "      max_connections: 2\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = HttpGet(agent->url("/metrics")).body;
  EXPECT_EQ(SampleValue(body, "pg_test_public_tables{datname=\"app_a\"}"), 2.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_test_public_tables{datname=\"app_b\"}"), 0.0);
  EXPECT_EQ(SampleValue(body, "pg_test_public_tables{datname=\"postgres\"}"), 0.0);
  EXPECT_FALSE(SampleValue(body, "pg_test_public_tables{datname=\"other_c\"}")) << "excluded by include";
  EXPECT_EQ(SampleValue(body, "pg_test_has_pgstattuple{datname=\"app_a\"}"), 1.0);
  EXPECT_EQ(CountSamples(body, "pg_test_has_pgstattuple"), 1) << "extension is per database";
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"tables_per_db\",target=\"main\"}"), 1.0);
  // Three databases, two connections at most: the DSN's own plus one rotating.
  EXPECT_LE(std::stoi(pg->Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse'")), 2);

  pg->Exec("DROP DATABASE app_b WITH (FORCE)");
  std::optional<double> gone = 0;
  for (int i = 0; i < 50 && gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    gone = SampleValue(HttpGet(agent->url("/metrics")).body, "pg_test_public_tables{datname=\"app_b\"}");
  }
  EXPECT_FALSE(gone) << "a dropped database stops being collected";
  EXPECT_NE(agent->Log().find("database=app_b"), std::string::npos) << agent->Log();
  EXPECT_EQ(pg->Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse' AND datname = 'app_b'"),
            "0");
  std::string landing = HttpGet(agent->url("/")).body;
  EXPECT_NE(landing.find("tables_per_db <small>(app_a)</small>"), std::string::npos) << landing;
}

// While one database's collectors run, the next database's connection is already being opened (the
// connect overlaps work instead of adding to it), and never more than max_connections at once.
TEST(Discovery, TheNextDatabaseConnectsWhileThisOneIsCollected) {
  auto pg = PostgresServer::Start();
  for (const char* db : {"app_1", "app_2", "app_3", "app_4"}) pg->Exec(std::string("CREATE DATABASE ") + db);
  // Seen from each database after a pause: the databases pgpulse has a connection to.
  const char* definitions = R"(collectors:
  - name: who_is_connected
    help: The databases pgpulse is connected to, seen from each database.
    scope: database
    sql: |
      SELECT a.datname AS connected_to, count(*) AS n
      FROM (SELECT pg_sleep(0.3) OFFSET 0) pause
      CROSS JOIN LATERAL (SELECT datname FROM pg_stat_activity
                          WHERE application_name = 'pgpulse' AND pause IS NOT NULL) a
      GROUP BY 1
    columns:
      connected_to: label
      n: {gauge: pg_test_connections, help: Connections.}
)";
  const std::string cfg = WriteConfigWithDefinitions(
      "prefetch.yml", pg->uri(), WriteTempFile("prefetch-defs/x.yaml", definitions),
      "    databases:\n      discover: true\n      include: ['app_.*', postgres]\n      max_connections: 3\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  const std::string body = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 20"}).body;
  ASSERT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"who_is_connected\",target=\"main\"}"), 1.0)
      << body;
  // Databases are collected in name order, the own one (postgres) among them.
  const std::vector<std::string> order = {"app_1", "app_2", "app_3", "app_4", "postgres"};
  for (size_t i = 0; i + 1 < order.size(); ++i) {
    const std::string seen = "pg_test_connections{datname=\"" + order[i] + "\",connected_to=\"";
    EXPECT_EQ(SampleValue(body, seen + order[i + 1] + "\"}"), 1.0)
        << order[i + 1] << " is connected while " << order[i] << " is collected\n"
        << body;
    double open = 0;
    for (const std::string& db : order) open += SampleValue(body, seen + db + "\"}").value_or(0);
    EXPECT_LE(open, 3.0) << "max_connections: 3, seen from " << order[i];
  }
}

// A database whose connection is refused (here by pg_hba.conf) fails its collectors alone, with the
// server's reason; the others are collected, and it is tried again after its backoff.
TEST(Discovery, ADatabaseThatRefusesConnectionsFailsAloneAndIsTriedAgain) {
  auto pg = PostgresServer::Start();
  for (const char* db : {"app_1", "app_2", "app_3"}) pg->Exec(std::string("CREATE DATABASE ") + db);
  const std::string hba_path = pg->dir() + "/data/pg_hba.conf";
  std::string hba;
  {
    std::ifstream in(hba_path);
    hba.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const auto write_hba = [&](const std::string& text) {
    std::ofstream(hba_path, std::ios::trunc) << text;
    pg->Exec("SELECT pg_reload_conf()");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  };
  write_hba("host app_2 all 127.0.0.1/32 reject\n" + hba);
  auto agent = StartDiscovering(*pg, "refused", kDefinitions, "['app_.*', postgres]");
  std::string body = HttpGet(agent->url("/metrics")).body;
  for (const char* db : {"app_1", "app_3", "postgres"})
    EXPECT_EQ(SampleValue(body, std::string("pg_test_public_tables{datname=\"") + db + "\"}"), 0.0) << db << body;
  EXPECT_FALSE(SampleValue(body, "pg_test_public_tables{datname=\"app_2\"}")) << body;
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"tables_per_db\",target=\"main\"}"), 0.0);
  EXPECT_NE(agent->Log().find("database=app_2"), std::string::npos) << agent->Log();
  EXPECT_NE(agent->Log().find("pg_hba.conf rejects connection"), std::string::npos) << agent->Log();
  const std::string landing = HttpGet(agent->url("/")).body;
  EXPECT_NE(landing.find("cannot connect to database app_2"), std::string::npos) << landing;

  write_hba(hba);
  std::optional<double> back;
  for (int i = 0; i < 40 && !back; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    back = SampleValue(HttpGet(agent->url("/metrics")).body, "pg_test_public_tables{datname=\"app_2\"}");
  }
  EXPECT_EQ(back, 0.0) << "app_2 collected once it lets pgpulse in";
}

// run_in: a database-scoped collector runs only in the databases its query names, asked again at each
// collection; one whose run_in query fails runs everywhere, as without it, and says so.
TEST(Discovery, RunInChoosesTheDatabasesAtEachCollection) {
  auto pg = PostgresServer::Start();
  pg->Exec("CREATE DATABASE app_a");
  pg->Exec("CREATE DATABASE app_b");
  pg->Exec("CREATE TABLE chosen (datname text); INSERT INTO chosen VALUES ('app_a'), ('no_such_database')");
  const char* definitions = R"(collectors:
  - name: only_chosen
    help: Runs where the table chosen says.
    scope: database
    run_in: SELECT datname FROM chosen
    sql: SELECT 1 AS v
    columns:
      v: {gauge: pg_test_chosen, help: One.}
  - name: broken_choice
    help: Its run_in query fails.
    scope: database
    run_in: SELECT datname FROM no_such_table
    sql: SELECT 1 AS v
    columns:
      v: {gauge: pg_test_everywhere, help: One.}
)";
  auto agent = StartDiscovering(*pg, "runin", definitions, "['app_.*', postgres]");
  std::string body = HttpGet(agent->url("/metrics")).body;
  EXPECT_EQ(SampleValue(body, "pg_test_chosen{datname=\"app_a\"}"), 1.0) << body;
  EXPECT_EQ(CountSamples(body, "pg_test_chosen"), 1) << "not in app_b or postgres";
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"only_chosen\",target=\"main\"}"), 1.0);
  std::string landing = HttpGet(agent->url("/")).body;
  EXPECT_NE(landing.find("runs only where its run_in query finds something to report: in 1 of 3 databases"),
            std::string::npos)
      << landing;
  // The failed choice loses nothing: it ran in every database, and its failure is shown.
  EXPECT_EQ(CountSamples(body, "pg_test_everywhere"), 3) << body;
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"broken_choice\",target=\"main\"}"), 0.0);
  EXPECT_NE(landing.find("its run_in query failed, so it runs in every database"), std::string::npos) << landing;
  EXPECT_NE(agent->Log().find("no_such_table"), std::string::npos) << agent->Log();

  // The next collection asks again.
  pg->Exec("UPDATE chosen SET datname = 'app_b' WHERE datname = 'app_a'");
  body = HttpGet(agent->url("/metrics")).body;
  EXPECT_EQ(SampleValue(body, "pg_test_chosen{datname=\"app_b\"}"), 1.0) << body;
  EXPECT_EQ(CountSamples(body, "pg_test_chosen"), 1);
  pg->Exec("DELETE FROM chosen");
  body = HttpGet(agent->url("/metrics")).body;
  EXPECT_EQ(CountSamples(body, "pg_test_chosen"), 0) << body;
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"only_chosen\",target=\"main\"}"), 1.0)
      << "running nowhere is not a failure";
  EXPECT_NE(HttpGet(agent->url("/")).body.find("in 0 of 3 databases"), std::string::npos);
}

// run_if: the collector's query runs only where its run_if query says so, in the same transaction; where
// it says no the result has no rows (the query, which would fail there, is not run); a failing run_if
// fails the collector.
TEST(Discovery, RunIfSkipsTheQueryWhereItSaysNo) {
  auto pg = PostgresServer::Start();
  pg->Exec("CREATE DATABASE app_a");
  {
    pqxx::connection a("host=127.0.0.1 port=" + std::to_string(pg->port()) + " user=postgres dbname=app_a");
    pqxx::nontransaction tx(a);
    tx.exec("CREATE TABLE marker (id int); INSERT INTO marker VALUES (1), (2), (3)");
  }
  const char* definitions = R"(collectors:
  - name: guarded
    help: Counts the rows of a table that only app_a has.
    scope: database
    run_if: SELECT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'marker')
    sql: SELECT count(*) AS n FROM marker
    columns:
      n: {gauge: pg_test_marker_rows, help: Rows.}
  - name: guard_fails
    help: Its run_if query fails.
    scope: database
    run_if: SELECT no_such_column FROM pg_class
    sql: SELECT 1 AS v
    columns:
      v: {gauge: pg_test_unguarded, help: One.}
)";
  auto agent = StartDiscovering(*pg, "runif", definitions, "[app_a, postgres]");
  const std::string body = HttpGet(agent->url("/metrics")).body;
  EXPECT_EQ(SampleValue(body, "pg_test_marker_rows{datname=\"app_a\"}"), 3.0) << body;
  EXPECT_EQ(CountSamples(body, "pg_test_marker_rows"), 1);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"guarded\",target=\"main\"}"), 1.0) << agent->Log();
  const std::string landing = HttpGet(agent->url("/")).body;
  EXPECT_NE(landing.find("not run: its run_if query found nothing to report here"), std::string::npos) << landing;
  EXPECT_EQ(CountSamples(body, "pg_test_unguarded"), 0);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"guard_fails\",target=\"main\"}"), 0.0);
  EXPECT_NE(landing.find("no_such_column"), std::string::npos) << landing;
}

TEST(Discovery, WithoutDiscoveryOnlyTheDsnDatabaseIsUsed) {
  auto pg = PostgresServer::Start();
  pg->Exec("CREATE DATABASE elsewhere");
  std::string cfg =
      WriteConfigWithDefinitions("nodisc.yml", pg->uri(), WriteTempFile("disc-defs2/fanout.yaml", kDefinitions));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = HttpGet(agent->url("/metrics")).body;
  EXPECT_EQ(CountSamples(body, "pg_test_public_tables"), 1) << body;
  EXPECT_TRUE(SampleValue(body, "pg_test_public_tables{datname=\"postgres\"}"));
}

TEST(Discovery, InvalidPatternIsAConfigErrorWithPosition) {
  std::string cfg = WriteTempFile("badre.yml", "targets:\n  - name: main\n    databases:\n      include: ['app_(']\n");
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_NE(r.output.find("badre.yml:4:17: target 'main'.databases.include: invalid regex 'app_('"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace pgpulse::testing
