// The agent as users run it: a real binary, a real PostgreSQL, real HTTP.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/silent_server.h"

namespace pgpulse::testing {
namespace {

// A directory of extra collector definitions, removed with the object.
class DefinitionsDir {
 public:
  explicit DefinitionsDir(const std::string& yaml) {
    char tmpl[] = "/tmp/pgpulse-defs-XXXXXX";
    path_ = mkdtemp(tmpl);
    std::ofstream(path_ + "/extra.yaml") << yaml;
  }
  ~DefinitionsDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ConfigFor(const PostgresServer& pg, const std::string& defs_dir, const std::string& extra = "") {
  std::string c = "targets:\n  - name: main\n    dsn: \"" + pg.uri() + "\"\n";
  if (!defs_dir.empty()) c += "collectors:\n  directories: [\"" + defs_dir + "\"]\n";
  return c + extra;
}

int StatementCalls(const PostgresServer& pg, const std::string& marker) {
  std::string v = pg.Query("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '%" + marker +
                           "%'"
                           " AND query NOT LIKE '%pg_stat_statements%'");
  return std::stoi(v);
}

class AgentTest : public SharedServerTest {};

TEST_F(AgentTest, ServesServerMetricsAndInfo) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << body;
  std::string version = pg_->Query("SHOW server_version_num");
  EXPECT_NE(body.find("server_version_num=\"" + version + "\""), std::string::npos) << body;
  EXPECT_NE(body.find("in_recovery=\"false\""), std::string::npos);
  EXPECT_EQ(SampleValue(body, "pg_connections_max"), std::stod(pg_->Query("SHOW max_connections")));
  EXPECT_GE(CountSamples(body, "pg_database_xact_commit_total"), 1);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"database_stats\",target=\"default\"}"), 1.0);
  EXPECT_EQ(CountSamples(body, "pgpulse_build_info"), 1);
  EXPECT_GT(SampleValue(body, "process_resident_memory_bytes").value_or(0), 0);
  EXPECT_EQ(SampleValue(body, "pg_activity_idle_in_transaction_sessions{datname=\"postgres\"}"), 0.0);
  // The deadline is Prometheus's timeout minus the 500ms offset.
  std::string timed = Scrape(*agent, 5);
  EXPECT_NEAR(SampleValue(timed, "pgpulse_scrape_deadline_seconds{target=\"default\"}").value_or(0), 4.5, 0.05);
}

// `pgpulse sql NAME` prints the SQL the agent runs for this server's version: it runs, and returns the rows
// the collector serves.
TEST_F(AgentTest, SqlPrintsWhatACollectorRunsOnThisServer) {
  pg_->Exec("CREATE TABLE IF NOT EXISTS sql_cmd (id int PRIMARY KEY)");
  const std::string version = pg_->Query("SHOW server_version_num");
  CommandResult r = AgentProcess::Run({"sql", "index_stats", "--server-version", version});
  ASSERT_EQ(r.exit_status, 0) << r.output;
  std::string sql = r.output;
  ASSERT_NE(sql.find("LIMIT $1"), std::string::npos) << sql;
  sql.replace(sql.find("$1"), 2, "1000");
  const std::string rows = pg_->Query("SELECT count(*) FROM (" + sql + ") q WHERE indexrelname = 'sql_cmd_pkey'");
  EXPECT_EQ(rows, "1");

  CommandResult unknown = AgentProcess::Run({"sql", "no_such_collector"});
  EXPECT_EQ(unknown.exit_status, 1);
  EXPECT_NE(unknown.output.find("no built-in collector named 'no_such_collector'"), std::string::npos);
  CommandResult skipped = AgentProcess::Run({"sql", "pe_stat_checkpointer", "--server-version", "150000"});
  EXPECT_EQ(skipped.exit_status, 1);
  EXPECT_NE(skipped.output.find("no SQL for server_version_num 150000"), std::string::npos) << skipped.output;
}

TEST_F(AgentTest, OneConnectionIsReusedAcrossScrapes) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  for (int i = 0; i < 5; ++i) Scrape(*agent);
  std::string pids =
      pg_->Query("SELECT count(DISTINCT backend_start) FROM pg_stat_activity WHERE application_name = 'pgpulse'");
  EXPECT_EQ(pids, "1");
}

TEST_F(AgentTest, BrokenCollectorLeavesTheScrapeGreen) {
  DefinitionsDir defs(R"(collectors:
  - name: broken
    help: Refers to a table that does not exist.
    sql: SELECT count(*) AS n FROM no_such_table
    columns:
      n: {gauge: pg_broken_rows, help: Never produced.}
)");
  std::string cfg = WriteTempFile("broken.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  HttpResponse r = HttpGet(agent->url("/metrics"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(SampleValue(r.body, "pg_up"), 1.0);
  EXPECT_EQ(SampleValue(r.body, "pgpulse_collector_success{collector=\"broken\",target=\"main\"}"), 0.0) << r.body;
  EXPECT_EQ(SampleValue(r.body, "pgpulse_collector_errors_total{collector=\"broken\",target=\"main\"}"), 1.0);
  EXPECT_EQ(CountSamples(r.body, "pg_broken_rows"), 0);
  EXPECT_GE(CountSamples(r.body, "pg_connections"), 1);
  EXPECT_NE(agent->Log().find("collector=broken"), std::string::npos);
  EXPECT_NE(agent->Log().find("no_such_table"), std::string::npos) << agent->Log();
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("relation &quot;no_such_table&quot; does not exist"), std::string::npos) << landing.body;
}

TEST_F(AgentTest, SlowCollectorIsCancelledOnTheServer) {
  DefinitionsDir defs(R"(collectors:
  - name: slow
    help: Sleeps far longer than its timeout.
    timeout: 1s
    sql: SELECT pg_sleep(30) IS NULL AS slow_marker_a
    columns:
      slow_marker_a: {gauge: pg_slow, help: Never produced.}
)");
  std::string cfg = WriteTempFile("slow.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  auto start = Clock::now();
  std::string body = Scrape(*agent, 10);
  EXPECT_LT(SecondsSince(start), 5.0);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"slow\",target=\"main\"}"), 0.0);
  EXPECT_EQ(pg_->Query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%slow_marker_a%' AND state = 'active'"
                       " AND pid <> pg_backend_pid()"),
            "0");
  EXPECT_NE(agent->Log().find("timed out after 1s"), std::string::npos) << agent->Log();
}

TEST_F(AgentTest, ScrapeDeadlineCancelsALongCollectorOnTheServer) {
  DefinitionsDir defs(R"(collectors:
  - name: long
    help: Its own timeout is generous; the scrape deadline is not.
    timeout: 60s
    sql: SELECT pg_sleep(30) IS NULL AS long_marker_b
    columns:
      long_marker_b: {gauge: pg_long, help: Never produced.}
)");
  std::string cfg = WriteTempFile("long.yml", ConfigFor(*pg_, defs.path(), "scrape:\n  timeout_offset: 500ms\n"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  auto start = Clock::now();
  std::string body = Scrape(*agent, 3);
  EXPECT_LT(SecondsSince(start), 3.0);
  // The agent cancels the cut-off query on the server; polled, as the cancel lands a moment after the response.
  const std::string still_running =
      "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%long_marker_b%' AND state = 'active'"
      " AND pid <> pg_backend_pid()";
  std::string running;
  PollUntil([&] { return (running = pg_->Query(still_running)) == "0"; }, 10, 0.05);
  EXPECT_EQ(running, "0") << "the cut-off query still runs on the server after 10 s";
}

TEST_F(AgentTest, DefinitionThatWritesFailsAndWritesNothing) {
  pg_->Exec("CREATE TABLE IF NOT EXISTS victim (id int); TRUNCATE victim; INSERT INTO victim VALUES (1)");
  DefinitionsDir defs(R"(collectors:
  - name: writer
    help: Tries to insert.
    sql: INSERT INTO victim VALUES (2) RETURNING id AS n
    columns:
      n: {gauge: pg_writer, help: Never produced.}
  - name: deleter
    help: Tries to delete through a CTE.
    sql: WITH d AS (DELETE FROM victim RETURNING 1) SELECT count(*) AS n FROM d
    columns:
      n: {gauge: pg_deleter, help: Never produced.}
  - name: escaper
    help: Tries to leave the read-only transaction.
    sql: COMMIT; INSERT INTO victim VALUES (3) RETURNING id AS n
    columns:
      n: {gauge: pg_escaper, help: Never produced.}
)");
  std::string cfg = WriteTempFile("writer.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"writer\",target=\"main\"}"), 0.0);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"deleter\",target=\"main\"}"), 0.0);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"escaper\",target=\"main\"}"), 0.0);
  EXPECT_NE(agent->Log().find("read-only transaction"), std::string::npos) << agent->Log();
  EXPECT_EQ(pg_->Query("SELECT string_agg(id::text, ',') FROM victim"), "1");
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);
}

TEST_F(AgentTest, DuplicateRowsAreDroppedNotAServerError) {
  DefinitionsDir defs(R"(collectors:
  - name: dupes
    help: Returns the same label set twice.
    sql: SELECT 'a' AS l, 1 AS v UNION ALL SELECT 'a', 2 UNION ALL SELECT 'b', 3
    columns:
      l: label
      v: {gauge: pg_dupes, help: Values.}
)");
  std::string cfg = WriteTempFile("dupes.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_dupes{l=\"a\"}"), 1.0);
  EXPECT_EQ(SampleValue(body, "pg_dupes{l=\"b\"}"), 3.0);
  EXPECT_EQ(CountSamples(body, "pg_dupes"), 2);
  EXPECT_EQ(
      SampleValue(body,
                  "pgpulse_collector_series_dropped_total{collector=\"dupes\",reason=\"duplicate\",target=\"main\"}"),
      1.0)
      << body;
}

TEST_F(AgentTest, DatabaseScopedCollectorsAreLabelledWithTheirDatabase) {
  DefinitionsDir defs(R"(collectors:
  - name: tables_here
    help: Counts user tables in the connected database.
    scope: database
    sql: SELECT count(*) AS n FROM pg_class WHERE relkind = 'r'
    columns:
      n: {gauge: pg_test_tables, help: Tables.}
)");
  std::string cfg = WriteTempFile("dbscope.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_test_tables{datname=\"postgres\"}"),
            std::stod(pg_->Query("SELECT count(*) FROM pg_class WHERE relkind = 'r'")))
      << body;
}

TEST_F(AgentTest, LockedTableTimesOutInsteadOfQueueing) {
  pg_->Exec("CREATE TABLE IF NOT EXISTS locked_tbl (id int)");
  DefinitionsDir defs(R"(collectors:
  - name: locked
    help: Reads a table another session holds an ACCESS EXCLUSIVE lock on.
    timeout: 1s
    sql: SELECT count(*) AS n FROM locked_tbl
    columns:
      n: {gauge: pg_locked_rows, help: Rows.}
)");
  std::string cfg = WriteTempFile("locked.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  pqxx::connection holder(pg_->dsn());
  pqxx::work tx(holder);
  tx.exec("LOCK TABLE locked_tbl IN ACCESS EXCLUSIVE MODE");
  auto start = Clock::now();
  std::string body = Scrape(*agent, 10);
  EXPECT_LT(SecondsSince(start), 4.0);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_success{collector=\"locked\",target=\"main\"}"), 0.0);
  EXPECT_GE(CountSamples(body, "pg_connections"), 1);
  EXPECT_NE(agent->Log().find("waited too long for a lock"), std::string::npos) << agent->Log();
  EXPECT_EQ(pg_->Query("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                       " WHERE a.application_name = 'pgpulse' AND NOT l.granted"),
            "0");
  tx.abort();
}

TEST_F(AgentTest, ATableLockedExclusivelyDoesNotStallTheShippedCollectors) {
  pg_->Exec(
      "CREATE TABLE IF NOT EXISTS being_altered (id int); CREATE INDEX IF NOT EXISTS being_altered_id ON being_altered "
      "(id)");
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  pqxx::connection holder(pg_->dsn());
  pqxx::work tx(holder);
  tx.exec("LOCK TABLE being_altered IN ACCESS EXCLUSIVE MODE");
  auto start = Clock::now();
  std::string body = Scrape(*agent, 10);
  EXPECT_LT(SecondsSince(start), 3.0) << "a collector queued behind the lock";
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("pgpulse_collector_success{", 0) == 0) {
      EXPECT_EQ(line.back(), '1') << line;
    }
  }
  tx.abort();
}

TEST_F(AgentTest, ConcurrentScrapesShareOneCollection) {
  DefinitionsDir defs(R"(collectors:
  - name: shared
    help: Slow enough that scrapes overlap.
    sql: SELECT pg_sleep(1.5) IS NULL AS shared_marker_c
    columns:
      shared_marker_c: {gauge: pg_shared, help: Zero.}
)");
  std::string cfg = WriteTempFile("shared.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  int before = StatementCalls(*pg_, "shared_marker_c");
  std::vector<std::future<HttpResponse>> scrapes;
  for (int i = 0; i < 6; ++i)
    scrapes.push_back(std::async(std::launch::async, [&] { return HttpGet(agent->url("/metrics")); }));
  for (auto& s : scrapes) {
    HttpResponse r = s.get();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(SampleValue(r.body, "pg_shared"), 0.0);
  }
  EXPECT_EQ(StatementCalls(*pg_, "shared_marker_c") - before, 1);
}

TEST_F(AgentTest, TtlCacheAnswersWithoutQuerying) {
  DefinitionsDir defs(R"(collectors:
  - name: cached
    help: Expensive, so cached.
    ttl: 1h
    sql: SELECT 7 AS cached_marker_d
    columns:
      cached_marker_d: {gauge: pg_cached, help: Seven.}
)");
  std::string cfg = WriteTempFile("cached.yml", ConfigFor(*pg_, defs.path()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  int before = StatementCalls(*pg_, "cached_marker_d");
  std::string body;
  for (int i = 0; i < 3; ++i) body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_cached"), 7.0);
  EXPECT_EQ(StatementCalls(*pg_, "cached_marker_d") - before, 1);
  EXPECT_EQ(SampleValue(body, "pgpulse_collector_cache_hits_total{collector=\"cached\",target=\"main\"}"), 2.0);
}

TEST_F(AgentTest, GzipWhenTheClientAcceptsIt) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  HttpResponse z = HttpGet(agent->url("/metrics"), {"Accept-Encoding: gzip"});
  ASSERT_EQ(z.status, 200);
  EXPECT_EQ(z.headers["content-encoding"], "gzip");
  std::string text = Gunzip(z.body);
  EXPECT_EQ(SampleValue(text, "pg_up"), 1.0);
  EXPECT_EQ(z.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  HttpResponse plain = HttpGet(agent->url("/metrics"), {"Accept-Encoding: identity"});
  EXPECT_EQ(plain.headers.count("content-encoding"), 0u);
  EXPECT_EQ(SampleValue(plain.body, "pg_up"), 1.0);
}

TEST_F(AgentTest, HttpRoutesAndMethods) {
  auto agent = AgentProcess::Start({"--web.telemetry-path=/custom"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  EXPECT_EQ(HttpGet(agent->url("/custom")).status, 200);
  EXPECT_EQ(HttpGet(agent->url("/metrics")).status, 404);
  EXPECT_EQ(HttpGet(agent->url("/nope")).status, 404);
  EXPECT_EQ(HttpGet(agent->url("/healthz")).status, 200);
  EXPECT_EQ(HttpGet(agent->url("/readyz")).status, 200);
  HttpResponse post = HttpRequest("POST", agent->url("/custom"), {}, "x");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers["allow"], "GET, HEAD");
  EXPECT_EQ(HttpRequest("DELETE", agent->url("/healthz")).status, 405);
  EXPECT_EQ(HttpRequest("HEAD", agent->url("/custom")).status, 200);
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_EQ(landing.status, 200);
  EXPECT_NE(landing.body.find("<td>database_stats</td><td>ok</td>"), std::string::npos) << landing.body;
  EXPECT_NE(landing.body.find("href=\"/custom\""), std::string::npos);
}

TEST_F(AgentTest, PromtoolFindsNoProblemInARealScrape) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  std::string body = Scrape(*agent);
  std::string path = WriteTempFile("scrape.prom", body);
  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  CommandResult r = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(r.output, "") << r.output;
}

// Issue #18: a table named café in a LATIN1 database, or any byte >= 0x80 in a SQL_ASCII one,
// went out as raw bytes; promtool (and Prometheus, which then dropped the target) rejected
// the scrape. Names are converted to UTF-8 by the server, and what cannot be is replaced.
TEST(AgentEncoding, NamesFromLatin1AndSqlAsciiDatabasesAreValidUtf8) {
  auto pg = PostgresServer::Start();
  pg->Exec("CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'");
  pg->Exec("CREATE DATABASE ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'");
  {
    pqxx::connection latin(pg->dsn() + " dbname=latin client_encoding=UTF8");
    pqxx::nontransaction(latin).exec("CREATE TABLE \"caf\xc3\xa9\" (i int)");
    pqxx::connection ascii(pg->dsn() + " dbname=ascii client_encoding=SQL_ASCII");
    pqxx::nontransaction(ascii).exec("CREATE TABLE \"bad\xe9\xff\" (i int)");
  }
  std::string cfg = WriteTempFile(
      "encodings.yml", "targets:\n  - name: main\n    dsn: \"" + pg->uri() + "\"\n    databases: {discover: true}\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = HttpGet(agent->url("/metrics")).body;
  EXPECT_NE(body.find("\"caf\xc3\xa9\""), std::string::npos) << "LATIN1 converted to UTF-8";
  EXPECT_NE(body.find("\"bad\xef\xbf\xbd\xef\xbf\xbd\""), std::string::npos) << "invalid bytes replaced";
  EXPECT_GE(SampleValue(body, "pgpulse_invalid_utf8_replacements_total"), 2.0);
  std::string path = WriteTempFile("encodings.prom", body);
  CommandResult r = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_EQ(r.output, "") << r.output;
}

TEST_F(AgentTest, ReloadWithBadConfigKeepsServing) {
  std::string cfg = WriteTempFile("reload.yml", ConfigFor(*pg_, ""));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_up"), 1.0);

  WriteTempFile("reload.yml", "targets:\n  - name: main\n    dsn: [not, a, string]\n");
  agent->Signal(SIGHUP);
  std::string body = ScrapeUntilValue(*agent, "pgpulse_config_last_reload_successful", 0, 5);
  EXPECT_EQ(SampleValue(body, "pgpulse_config_last_reload_successful"), 0.0);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0);
  EXPECT_NE(agent->Log().find("reload.yml:3:10: target 'main'.dsn must be a string"), std::string::npos)
      << agent->Log();
  EXPECT_TRUE(agent->Running());

  DefinitionsDir defs(R"(collectors:
  - name: added
    help: Added by a reload.
    sql: SELECT 42 AS v
    columns:
      v: {gauge: pg_added_by_reload, help: Forty-two.}
)");
  WriteTempFile("reload.yml", ConfigFor(*pg_, defs.path()));
  agent->Signal(SIGHUP);
  body = ScrapeUntil(
      *agent, [](const std::string& b) { return SampleValue(b, "pg_added_by_reload").has_value(); }, 5);
  EXPECT_EQ(SampleValue(body, "pg_added_by_reload"), 42.0);
  EXPECT_EQ(SampleValue(body, "pgpulse_config_last_reload_successful"), 1.0);
}

TEST_F(AgentTest, ProbeServesOneConfiguredTargetWithItsLabels) {
  std::string cfg = WriteTempFile("probe.yml",
                                  "targets:\n"
                                  "  - name: first\n    dsn: \"" +
                                      pg_->uri() +
                                      "\"\n"
                                      "    labels: {cluster: blue, env: test}\n"
                                      "  - name: second\n    dsn: \"host=127.0.0.1 port=1 connect_timeout=2\"\n"
                                      "scrape:\n  collect_on_metrics_path: false\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  HttpResponse first = HttpGet(agent->url("/probe?target=first"));
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(SampleValue(first.body, "pg_up{target=\"first\",cluster=\"blue\",env=\"test\"}"), 1.0) << first.body;
  EXPECT_EQ(SampleValue(first.body, "pg_connections_max{target=\"first\",cluster=\"blue\",env=\"test\"}"),
            std::stod(pg_->Query("SHOW max_connections")));
  EXPECT_EQ(first.body.find("target=\"second\""), std::string::npos);
  EXPECT_EQ(CountSamples(first.body, "pgpulse_build_info"), 0);
  HttpResponse second = HttpGet(agent->url("/probe?target=second"));
  EXPECT_EQ(SampleValue(second.body, "pg_up{target=\"second\"}"), 0.0) << second.body;
  EXPECT_EQ(HttpGet(agent->url("/probe?target=nope")).status, 404);
  EXPECT_EQ(HttpGet(agent->url("/probe")).status, 400);
  HttpResponse own = HttpGet(agent->url("/metrics"));
  EXPECT_EQ(CountSamples(own.body, "pg_up"), 0) << "collect_on_metrics_path: false";
  EXPECT_EQ(CountSamples(own.body, "pgpulse_build_info"), 1);
}

TEST_F(AgentTest, ProbeOfAServerAddressTakesCredentialsFromAnAuthModule) {
  const std::string secret = "Adhoc-Secret-91x";
  std::string pw = WriteTempFile("module.pw", secret + "\n");
  std::string cfg = WriteTempFile("modules.yml",
                                  "auth_modules:\n  local:\n    user: postgres\n"
                                  "    password_file: \"" +
                                      pw +
                                      "\"\n"
                                      "    options: {sslmode: disable, application_name: ignored}\n"
                                      "    allowed_targets: [127.0.0.1]\n"
                                      "    allow_unverified_server: true\n"
                                      "targets:\n  - name: main\n    dsn: \"" +
                                      pg_->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--log.level=debug"});
  std::string address = "127.0.0.1:" + std::to_string(pg_->port()) + "/postgres";
  HttpResponse r = HttpGet(agent->url("/probe?target=" + address + "&auth_module=local"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(SampleValue(r.body, "pg_up"), 1.0) << r.body;
  EXPECT_GE(CountSamples(r.body, "pg_connections"), 1);
  EXPECT_EQ(pg_->Query("SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgpulse'"), "t");
  EXPECT_EQ(HttpGet(agent->url("/probe?target=" + address + "&auth_module=nope")).status, 400);
  HttpResponse bad = HttpGet(agent->url("/probe?target=host%3Devil%20password%3Dx&auth_module=local"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("is not host[:port][/dbname]"), std::string::npos) << bad.body;
  EXPECT_EQ(HttpGet(agent->url("/probe?target=" + address)).status, 404);
  // A down address answers pg_up 0, like a configured target.
  HttpResponse down = HttpGet(agent->url("/probe?target=127.0.0.1:1&auth_module=local"));
  EXPECT_EQ(SampleValue(down.body, "pg_up"), 0.0) << down.body;
  EXPECT_EQ(agent->Log().find(secret), std::string::npos);
  EXPECT_EQ(HttpGet(agent->url("/")).body.find(secret), std::string::npos);
}

// A server on loopback that speaks just enough of the PostgreSQL protocol to ask every client
// for its password in the clear (AuthenticationCleartextPassword), as a hostile server named
// in a /probe request would, and records what each client sends.
class PasswordTrap {
 public:
  PasswordTrap() {
    listener_ = ListenOnLoopback(port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~PasswordTrap() {
    stop_ = true;
    thread_.join();
    close(listener_);
  }
  int port() const { return port_; }
  int connections() const { return connections_; }
  std::string received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  // Reads what arrives within `ms`; "" on timeout or close.
  static std::string ReadSome(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return "";
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  void Serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      std::string all, first = ReadSome(fd, 2000);
      all += first;
      // SSLRequest (length 8, code 80877103): say no, then read the startup message.
      if (first.size() == 8 && first.substr(4) == std::string("\x04\xd2\x16\x2f", 4)) {
        send(fd, "N", 1, MSG_NOSIGNAL);
        all += ReadSome(fd, 2000);
      }
      const char cleartext[] = {'R', 0, 0, 0, 8, 0, 0, 0, 3};
      send(fd, cleartext, sizeof cleartext, MSG_NOSIGNAL);
      all += ReadSome(fd, 2000);  // a PasswordMessage ('p') would arrive here
      {
        // Recorded before the close that ends the agent's attempt, so a test that reads it next sees it.
        std::lock_guard<std::mutex> lock(mu_);
        received_ += all;
      }
      close(fd);
    }
  }
  int listener_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::mutex mu_;
  std::string received_;
  std::thread thread_;
};

// Issue #18: an unauthenticated /probe named any host:port and the agent sent the auth module's
// password there, in the clear when asked. Now: addresses outside allowed_targets (DNS names
// included, never resolved) are a 403 without a connection; a module must insist on a verified
// server (or say explicitly that it need not), and then a server that cannot prove itself never
// gets to ask for the password.
TEST_F(AgentTest, ProbeNeverSendsAnAuthModulesPasswordToAServerItDoesNotTrust) {
  const std::string secret = "Trap-Secret-4471";
  std::string pw = WriteTempFile("trap.pw", secret + "\n");
  PasswordTrap trap;
  const std::string trap_port = std::to_string(trap.port());
  std::string cfg = WriteTempFile("trap.yml",
                                  "auth_modules:\n"
                                  "  mon:\n    user: postgres\n    password_file: \"" +
                                      pw +
                                      "\"\n"
                                      "    options: {sslmode: disable}\n    allow_unverified_server: true\n"
                                      "    allowed_targets: [\"127.0.0.1:" +
                                      std::to_string(pg_->port()) +
                                      "\", 10.0.0.0/8]\n"
                                      "  verified:\n    user: postgres\n    password_file: \"" +
                                      pw +
                                      "\"\n"
                                      "    options: {sslmode: verify-full, sslrootcert: /nonexistent/ca.pem}\n"
                                      "    allowed_targets: [\"127.0.0.1:" +
                                      trap_port +
                                      "\"]\n"
                                      "  careless:\n    user: postgres\n    password_file: \"" +
                                      pw +
                                      "\"\n"
                                      "    options: {sslmode: disable}\n    allow_unverified_server: true\n"
                                      "    allowed_targets: [\"127.0.0.1:" +
                                      trap_port +
                                      "\"]\n"
                                      "targets:\n  - name: main\n    dsn: \"" +
                                      pg_->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});

  // Outside the allow-list: refused before any connection, by address, by port, by name.
  for (const std::string& target :
       {"127.0.0.1:" + trap_port + "/postgres", "localhost:" + trap_port, "127.0.0.2:" + std::to_string(pg_->port())}) {
    HttpResponse r = HttpGet(agent->url("/probe?target=" + target + "&auth_module=mon"));
    EXPECT_EQ(r.status, 403) << target << ": " << r.body;
    EXPECT_NE(r.body.find("not in the allowed_targets of auth module 'mon'"), std::string::npos) << r.body;
  }
  EXPECT_EQ(trap.connections(), 0) << "the agent connected to an address outside allowed_targets";
  // Inside it, the real server still works.
  HttpResponse ok = HttpGet(agent->url("/probe?target=127.0.0.1:" + std::to_string(pg_->port()) + "&auth_module=mon"));
  EXPECT_EQ(SampleValue(ok.body, "pg_up"), 1.0) << ok.body;

  // Allowed, but the module wants a verified server: the trap cannot do TLS, so it never gets to ask.
  HttpResponse trapped = HttpGet(agent->url("/probe?target=127.0.0.1:" + trap_port + "&auth_module=verified"));
  EXPECT_EQ(SampleValue(trapped.body, "pg_up"), 0.0) << trapped.body;
  EXPECT_GE(trap.connections(), 1) << "the verified module should have tried the allowed trap";
  std::string got = trap.received();
  EXPECT_EQ(got.find(secret), std::string::npos) << "the password reached the trap";
  EXPECT_EQ(got.find("\np"), std::string::npos);
  EXPECT_EQ(agent->Log().find(secret), std::string::npos);
  // What allow_unverified_server gives up, and proof that the trap catches a password when one comes.
  HttpGet(agent->url("/probe?target=127.0.0.1:" + trap_port + "&auth_module=careless"));
  EXPECT_NE(trap.received().find(secret), std::string::npos) << "the trap should have caught the careless module";

  // A module that would send the password unverified is refused at load, unless it says so.
  for (const char* sslmode : {"disable", "require", "prefer"}) {
    std::string bad = WriteTempFile("unverified.yml", std::string("auth_modules:\n  m:\n    user: x\n"
                                                                  "    options: {sslmode: ") +
                                                          sslmode + "}\n    allowed_targets: [db7.example]\n");
    CommandResult r = AgentProcess::Run({"check", "--config.file=" + bad});
    EXPECT_EQ(r.exit_status, 1) << sslmode;
    EXPECT_NE(r.output.find("unverified.yml:3:5: auth_modules.m: options.sslmode is '" + std::string(sslmode) + "'"),
              std::string::npos)
        << r.output;
  }
  std::string missing = WriteTempFile("noallow.yml",
                                      "auth_modules:\n  m:\n    user: x\n"
                                      "    options: {sslmode: verify-full}\n");
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + missing});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_NE(r.output.find("auth_modules.m: missing required key 'allowed_targets'"), std::string::npos) << r.output;
  std::string malformed = WriteTempFile("badallow.yml",
                                        "auth_modules:\n  m:\n    user: x\n"
                                        "    options: {sslmode: verify-full}\n"
                                        "    allowed_targets: [\"10.0.0.0/33\", \"db:99999\"]\n");
  r = AgentProcess::Run({"check", "--config.file=" + malformed});
  EXPECT_NE(r.output.find("'10.0.0.0/33': prefix length must be 0 to 32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'db:99999': expected a port from 1 to 65535"), std::string::npos) << r.output;
}

// Issue #18: every distinct ad-hoc target left its pgpulse_* series in /metrics forever (28,350
// series after 1,575 targets). An evicted target takes its series with it.
TEST_F(AgentTest, EvictedProbeTargetsTakeTheirSeriesWithThem) {
  const std::string port = std::to_string(pg_->port());
  std::string cfg = WriteTempFile("evict.yml",
                                  "auth_modules:\n  local:\n    user: postgres\n"
                                  "    options: {sslmode: disable}\n    allow_unverified_server: true\n"
                                  "    allowed_targets: [127.0.0.1]\n"
                                  "max_probe_targets: 1\n"
                                  "targets:\n  - name: main\n    dsn: \"" +
                                      pg_->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  const std::vector<std::string> targets = {"127.0.0.1:" + port + "/postgres", "127.0.0.1:" + port + "/template1",
                                            "127.0.0.1:" + port};
  for (const std::string& t : targets) {
    HttpResponse r = HttpGet(agent->url("/probe?target=" + t + "&auth_module=local"));
    ASSERT_EQ(SampleValue(r.body, "pg_up"), 1.0) << t << ": " << r.body;
  }
  auto series_of = [](const std::string& body, const std::string& target) {
    size_t n = 0;
    for (size_t at = body.find("target=\"" + target + "\""); at != std::string::npos;
         at = body.find("target=\"" + target + "\"", at + 1))
      ++n;
    return n;
  };
  std::string body;
  for (int i = 0; i < 50; ++i) {  // the retirer drops them within ~100 ms
    body = HttpGet(agent->url("/metrics")).body;
    if (series_of(body, targets[0]) == 0 && series_of(body, targets[1]) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(series_of(body, targets[0]), 0u) << "evicted target's series are still there";
  EXPECT_EQ(series_of(body, targets[1]), 0u);
  EXPECT_GT(series_of(body, targets[2]), 5u) << "the target still kept has its series";
  EXPECT_GT(series_of(body, "main"), 5u);
}

// Issue #18: evicting an ad-hoc target whose server hangs blocked every other probe while its
// worker waited (14 to 20 s against a 5 s timeout). No request waits for an evicted target.
TEST_F(AgentTest, EvictingAHungProbeTargetDoesNotBlockOtherProbes) {
  // Accepts connections (the kernel's backlog) and never answers: a connect waits for connect_timeout.
  SilentServer silent;
  const std::string hung = silent.address();
  std::string cfg = WriteTempFile("hung.yml",
                                  "auth_modules:\n  local:\n    user: postgres\n"
                                  "    options: {sslmode: disable}\n    allow_unverified_server: true\n"
                                  "    allowed_targets: [127.0.0.1]\n"
                                  "max_probe_targets: 1\nconnect_timeout: 10s\n"
                                  "targets:\n  - name: main\n    dsn: \"" +
                                      pg_->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  // The hung probe answers pg_up 0 at its deadline (1 s here); its worker keeps waiting on the connect.
  HttpResponse down =
      HttpGet(agent->url("/probe?target=" + hung + "&auth_module=local"), {"X-Prometheus-Scrape-Timeout-Seconds: 1.5"});
  EXPECT_EQ(SampleValue(down.body, "pg_up"), 0.0) << down.body;
  auto start = std::chrono::steady_clock::now();
  HttpResponse other =
      HttpGet(agent->url("/probe?target=127.0.0.1:" + std::to_string(pg_->port()) + "&auth_module=local"));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(SampleValue(other.body, "pg_up"), 1.0) << other.body;
  EXPECT_LT(seconds, 3.0) << "the probe that evicted the hung target waited for it";
}

// Issue #18: SIGTERM waited for a hung backend indefinitely (here: the 30 s connect_timeout).
TEST_F(AgentTest, SigtermStopsWithinFiveSecondsEvenWithAHungServer) {
  SilentServer silent;
  std::string cfg = WriteTempFile("hungstop.yml",
                                  "connect_timeout: 30s\ntargets:\n  - name: hung\n    dsn: \""
                                  "host=127.0.0.1 port=" +
                                      std::to_string(silent.port()) + " user=x sslmode=disable\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  HttpResponse r = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 1"});
  EXPECT_EQ(SampleValue(r.body, "pg_up"), 0.0) << r.body;  // its worker is now stuck connecting
  auto start = std::chrono::steady_clock::now();
  int status = agent->Stop();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(status, 0) << agent->Log();
  EXPECT_LT(seconds, 7.0);
  EXPECT_NE(agent->Log().find("not stopped within 5s"), std::string::npos) << agent->Log();
}

// Issue #18: an over-long auth_module was ignored (the probe went on without it), %00 cut a
// target name short and an over-long target was told it had no target. Each is a 400 saying so.
TEST_F(AgentTest, ProbeParametersThatWouldBeMisreadAreRejected) {
  std::string cfg = WriteTempFile("params.yml", "targets:\n  - name: first\n    dsn: \"" + pg_->uri() + "\"\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  EXPECT_EQ(HttpGet(agent->url("/probe?target=first")).status, 200);
  struct Case {
    std::string query, says;
  };
  for (const Case& c : std::vector<Case>{
           {"target=first&auth_module=" + std::string(200, 'm'), "'auth_module' is longer than 127 bytes"},
           {"target=first%00ignored", "'target' contains a NUL byte (%00)"},
           {"target=" + std::string(300, 'x'), "'target' is longer than 255 bytes"},
           {"target=first&target=second", "'target' is given more than once"}}) {
    HttpResponse r = HttpGet(agent->url("/probe?" + c.query));
    EXPECT_EQ(r.status, 400) << c.query.substr(0, 40);
    EXPECT_NE(r.body.find(c.says), std::string::npos) << r.body;
  }
}

// Issue #18: `pgpulse check` started a worker thread per target and aborted without a message
// (uncaught std::system_error) when it could not. Under a 1 GB address-space limit 600 threads'
// stacks cannot exist; check needs none.
TEST_F(AgentTest, CheckNeedsNoThreadPerTarget) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan reserves more address space than the limit this test sets";
#endif
  std::string cfg = "targets:\n";
  for (int i = 0; i < 600; ++i)
    cfg += "  - name: t" + std::to_string(i) + "\n    dsn: \"host=127.0.0.1 port=1 user=x\"\n";
  std::string path = WriteTempFile("many.yml", cfg);
  CommandResult r = RunCommand(
      {"sh", "-c", std::string("ulimit -v 1000000; exec '") + PGPULSE_BINARY + "' check --config.file='" + path + "'"});
  EXPECT_EQ(r.exit_status, 0) << r.output.substr(0, 2000);
}

// Issue #18 item 9: definitions could terminate backends, take advisory locks or SET ROLE
// unnoticed. `pgpulse check` names each such collector; the built-in set has none.
TEST_F(AgentTest, CheckWarnsAboutCollectorsThatChangeTheServer) {
  CommandResult plain = AgentProcess::Run({"check"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  EXPECT_EQ(plain.exit_status, 0) << plain.output;
  EXPECT_EQ(plain.output.find("warning:"), std::string::npos) << plain.output;
  std::string defs = WriteTempFile("sidefx/x.yaml", R"(collectors:
  - name: killer
    help: Ends idle sessions.
    sql: SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE false
    columns:
      n: {gauge: pg_test_killed, help: Sessions ended.}
  - name: role_switch
    help: Switches role.
    sql: |
      SELECT 1 AS n FROM (SELECT set_config('role', 'nobody', false)) s
    columns:
      n: {gauge: pg_test_role, help: One.}
)");
  std::string cfg = WriteConfigWithDefinitions("sidefx.yml", pg_->uri(), defs);
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_NE(r.output.find("warning: " + defs + ":2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("collector 'killer' ends or cancels other sessions (pg_terminate_backend)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("collector 'role_switch' changes settings or reaches other servers (set_config("),
            std::string::npos)
      << r.output;
}

// Issue #18: the request that started a shared collection set its deadline for everyone, so a
// 1 ms scrape just before a normal one cut the normal one short. Each waiter keeps its own
// deadline; the collection runs to the latest.
TEST_F(AgentTest, AShortScrapeDoesNotCutShortTheCollectionAnotherScrapeJoins) {
  std::string defs = WriteTempFile("shared-defs/slow.yaml", R"(collectors:
  - name: slow_one
    help: Takes 400 ms.
    sql: SELECT 1 AS v FROM pg_sleep(0.4)
    columns:
      v: {gauge: pg_test_slow_one, help: One.}
  - name: after_slow
    help: Runs after the slow one.
    sql: SELECT 1 AS v
    columns:
      v: {gauge: pg_test_after_slow, help: One.}
)");
  std::string cfg = WriteConfigWithDefinitions("shared.yml", pg_->uri(), defs);
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  ASSERT_EQ(SampleValue(HttpGet(agent->url("/metrics")).body, "pg_up"), 1.0);  // connected, facts cached
  auto hurried = std::async(std::launch::async, [&] {
    auto start = Clock::now();
    std::string body = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 0.001"}).body;
    return std::make_pair(body, SecondsSince(start));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::string normal = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 10"}).body;
  auto [short_one, short_seconds] = hurried.get();
  EXPECT_EQ(SampleValue(normal, "pg_up"), 1.0);
  EXPECT_EQ(SampleValue(normal, "pg_test_slow_one"), 1.0) << "the normal scrape was cut short";
  EXPECT_EQ(SampleValue(normal, "pg_test_after_slow"), 1.0);
  // The hurried scrape still ends at its own deadline, before the 400 ms collector could: with
  // what this collection had done by then and the rest from the one before (or pg_up 0 when the
  // server had not answered yet).
  EXPECT_LT(short_seconds, 0.35) << short_one.substr(0, 300);
  EXPECT_TRUE(SampleValue(short_one, "pg_up").has_value());
}

// Issue #18 item 9: a collector's SET ROLE stayed on the connection for every later collector.
TEST_F(AgentTest, ACollectorsRoleChangeDoesNotOutliveIt) {
  std::string defs = WriteTempFile("role-defs/role.yaml", R"(collectors:
  - name: role_switch
    help: Switches the session's role.
    sql: SELECT 1 AS v FROM (SELECT set_config('role', 'pg_monitor', false)) s
    columns:
      v: {gauge: pg_test_role_switch, help: One.}
  - name: role_check
    help: Whether the session still has its own role.
    sql: SELECT (current_user = session_user)::int AS same
    columns:
      same: {gauge: pg_test_role_same, help: 1 while no role change is in effect.}
)");
  std::string cfg = WriteConfigWithDefinitions("role.yml", pg_->uri(), defs);
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  for (int i = 0; i < 2; ++i) {
    std::string body = HttpGet(agent->url("/metrics")).body;
    EXPECT_EQ(SampleValue(body, "pg_test_role_switch"), 1.0) << body.substr(0, 300);
    EXPECT_EQ(SampleValue(body, "pg_test_role_same"), 1.0) << "SET ROLE leaked into the next collector";
  }
}

TEST_F(AgentTest, AuthModuleWithAnUnknownOptionIsRejected) {
  std::string cfg = WriteTempFile("badmodule.yml",
                                  "auth_modules:\n  m:\n    user: x\n    options: {sslmod: require}\n"
                                  "  n:\n    user: y\n    options: {host: elsewhere}\n");
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_NE(r.output.find("auth module 'm': options: invalid DSN"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'host' comes from the probe request"), std::string::npos) << r.output;
}

TEST_F(AgentTest, ConstantLabelThatCollidesWithACollectorLabelIsRejected) {
  std::string cfg =
      WriteTempFile("collide.yml", "targets:\n  - name: a\n    dsn: \"" + pg_->uri() + "\"\n    labels: {state: x}\n");
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_NE(r.output.find("constant label 'state' is also produced by a collector"), std::string::npos) << r.output;
}

TEST_F(AgentTest, BadDefinitionAtStartupIsRefusedWithPosition) {
  DefinitionsDir defs(
      "collectors:\n  - name: x\n    help: h\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, halp: h}}\n");
  std::string cfg = WriteTempFile("baddef.yml", ConfigFor(*pg_, defs.path()));
  CommandResult r = AgentProcess::Run({"--config.file=" + cfg});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_NE(r.output.find(defs.path() + "/extra.yaml:5:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unknown key 'halp'"), std::string::npos) << r.output;
  CommandResult check = AgentProcess::Run({"check", "--config.file=" + cfg});
  EXPECT_EQ(check.exit_status, 1);
  EXPECT_NE(check.output.find("unknown key 'halp'"), std::string::npos) << check.output;
}

TEST_F(AgentTest, CheckConnectPrintsATableOfCollectors) {
  CommandResult r = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  EXPECT_NE(r.output.find("COLLECTOR"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("database_stats"), std::string::npos);
  EXPECT_NE(r.output.find(" ok "), std::string::npos);
  CommandResult offline = AgentProcess::Run({"check"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  EXPECT_EQ(offline.exit_status, 0) << offline.output;
  EXPECT_EQ(offline.output.find("COLLECTOR"), std::string::npos);
}

TEST_F(AgentTest, PasswordNeverAppearsInLogsPagesOrMetrics) {
  const std::string secret = "Zq7-unique-secret-Pw";
  std::string dsn = "postgresql://no_such_role:" + secret + "@127.0.0.1:" + std::to_string(pg_->port()) + "/postgres";
  auto agent = AgentProcess::Start({"--log.level=debug"}, {{"DATA_SOURCE_NAME", dsn}});
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up"), 0.0);
  std::string landing = HttpGet(agent->url("/")).body;
  std::string ready = HttpGet(agent->url("/readyz")).body;
  EXPECT_NE(landing.find("no_such_role"), std::string::npos) << landing;
  for (const std::string* s : {&body, &landing, &ready}) EXPECT_EQ(s->find(secret), std::string::npos) << *s;
  EXPECT_EQ(agent->Log().find(secret), std::string::npos) << agent->Log();
  CommandResult check = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", dsn}});
  EXPECT_EQ(check.exit_status, 1);
  EXPECT_EQ(check.output.find(secret), std::string::npos) << check.output;
  CommandResult bad = AgentProcess::Run({"check"}, {{"DATA_SOURCE_NAME", "host=h password=" + secret + " junk"}});
  EXPECT_EQ(bad.exit_status, 1);
  EXPECT_NE(bad.output.find("invalid DSN"), std::string::npos) << bad.output;
  EXPECT_EQ(bad.output.find(secret), std::string::npos) << bad.output;
}

TEST_F(AgentTest, SigtermStopsCleanlyAndClosesConnections) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  Scrape(*agent);
  EXPECT_EQ(pg_->Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse'"), "1");
  EXPECT_EQ(agent->Stop(), 0);
  std::string left = "1";
  for (int i = 0; i < 50 && left != "0"; ++i) {
    left = pg_->Query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse'");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(left, "0");
}

TEST_F(AgentTest, InvalidFlagsAreRejected) {
  CommandResult r = AgentProcess::Run({"--log.level=loud"});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.output.find("--log.level"), std::string::npos) << r.output;
  CommandResult l = AgentProcess::Run({"--web.listen-address=nonsense"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  EXPECT_NE(l.exit_status, 0);
  EXPECT_NE(l.output.find("nonsense"), std::string::npos) << l.output;
  CommandResult v = AgentProcess::Run({"--version"});
  EXPECT_EQ(v.exit_status, 0);
  EXPECT_NE(v.output.find("pgpulse"), std::string::npos);
  // The revision is looked up when the binary is built, not when the build was configured.
  CommandResult head = RunCommand({"git", "-C", PGPULSE_SOURCE_DIR, "rev-parse", "--short", "HEAD"});
  if (head.exit_status == 0) {
    EXPECT_NE(v.output.find("(revision " + head.output.substr(0, head.output.find('\n')) + ")"), std::string::npos)
        << v.output << " built from " << head.output;
  }
}

TEST_F(AgentTest, JsonLogsAreOneObjectPerLine) {
  auto agent = AgentProcess::Start({"--log.format=json"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  Scrape(*agent);
  agent->Stop();
  std::istringstream in(agent->Log());
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    ++lines;
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
    EXPECT_NE(line.find("\"level\":"), std::string::npos) << line;
  }
  EXPECT_GE(lines, 2);
}

// Servers that stop, restart or never answer get their own PostgreSQL.
TEST(AgentOutage, UpGoesToZeroWithinTheDeadlineAndBackWithoutRestart) {
  auto pg = PostgresServer::Start();
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg->uri()}});
  EXPECT_EQ(SampleValue(Scrape(*agent, 3), "pg_up"), 1.0);
  pid_t pid = agent->pid();

  pg->Stop();
  auto start = Clock::now();
  std::string body = Scrape(*agent, 3);
  EXPECT_LT(SecondsSince(start), 3.0);
  EXPECT_EQ(SampleValue(body, "pg_up"), 0.0) << body;
  EXPECT_EQ(CountSamples(body, "pg_connections"), 0);
  EXPECT_EQ(HttpGet(agent->url("/readyz")).status, 503);

  pg->StartAgain();
  std::optional<double> up;
  for (int i = 0; i < 60 && up != 1.0; ++i) {
    up = SampleValue(Scrape(*agent, 3), "pg_up");
    if (up != 1.0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_EQ(up, 1.0);
  EXPECT_EQ(agent->pid(), pid);
  EXPECT_TRUE(agent->Running());
}

TEST(AgentOutage, ServerThatNeverAnswersIsDownWithinTheDeadline) {
  // A listening socket nobody reads: TCP connects, PostgreSQL's protocol never starts.
  SilentServer silent;
  std::string dsn = "host=127.0.0.1 port=" + std::to_string(silent.port()) + " user=x dbname=x sslmode=disable";
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", dsn}});
  for (int i = 0; i < 2; ++i) {
    auto start = Clock::now();
    std::string body = Scrape(*agent, 2);
    EXPECT_LT(SecondsSince(start), 2.0);
    EXPECT_EQ(SampleValue(body, "pg_up"), 0.0);
  }
}

}  // namespace
}  // namespace pgpulse::testing
