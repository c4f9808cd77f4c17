// Errors by kind (agent/sources/logs.h) against a real server writing jsonlog or csvlog:
// a statement timeout, a deadlock between two sessions and authentication failures, each
// counted exactly once; rotation keeps counting; and every way the log can be out of
// reach, each said with its reason.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

std::string Config(const PostgresServer& pg, const std::string& extra = "") {
  return "targets:\n  - name: main\n    dsn: \"" + pg.uri() + "\"\n" + extra;
}

std::unique_ptr<AgentProcess> StartAgent(const std::string& config_text) {
  return AgentProcess::Start({"--config.file=" + WriteTempFile("logs.yml", config_text)});
}

std::unique_ptr<PostgresServer> StartLogging(const std::string& destination) {
  return PostgresServer::Start(
      {"logging_collector = on", "log_destination = '" + destination + "'", "lc_messages = 'C'"});
}

double Value(const std::string& body, const std::string& series) {
  std::optional<double> v = SampleValue(body, series);
  EXPECT_TRUE(v.has_value()) << "no sample " << series << " in:\n" << body;
  return v.value_or(-1);
}

// The counters the test checks, read from one scrape.
struct Counts {
  double timeouts, deadlocks, auth, errors_22;
  static Counts From(const std::string& body) {
    return {Value(body, "pg_log_statement_timeouts_total"), Value(body, "pg_log_deadlocks_total"),
            Value(body, "pg_log_authentication_failures_total"),
            SampleValue(body, "pg_log_messages_total{severity=\"ERROR\",sqlstate_class=\"22\"}").value_or(0)};
  }
};

void CauseStatementTimeout(const PostgresServer& pg) {
  EXPECT_THROW(pg.Exec("SET statement_timeout = '50ms'; SELECT pg_sleep(5)"), pqxx::sql_error);
}

// Two sessions each holding a row the other wants: the deadlock detector aborts exactly one.
void CauseDeadlock(const PostgresServer& pg) {
  pg.Exec("CREATE TABLE IF NOT EXISTS dl (id int PRIMARY KEY); INSERT INTO dl VALUES (1), (2) ON CONFLICT DO NOTHING");
  pqxx::connection a(pg.dsn()), b(pg.dsn());
  pqxx::nontransaction(a).exec("BEGIN; UPDATE dl SET id = id WHERE id = 1");
  pqxx::nontransaction(b).exec("BEGIN; UPDATE dl SET id = id WHERE id = 2");
  std::atomic<int> failed{0};
  std::thread other([&] {
    try {
      pqxx::nontransaction(a).exec("UPDATE dl SET id = id WHERE id = 2");
    } catch (const std::exception&) {  // pqxx::deadlock_detected
      ++failed;
    }
  });
  // Let a wait first, so that b's update completes the cycle.
  PollUntil([&] { return pg.Query("SELECT count(*) FROM pg_locks WHERE NOT granted") != "0"; });
  try {
    pqxx::nontransaction(b).exec("UPDATE dl SET id = id WHERE id = 1");
  } catch (const std::exception&) {
    ++failed;
  }
  pqxx::nontransaction(b).exec("ROLLBACK");
  other.join();
  pqxx::nontransaction(a).exec("ROLLBACK");
  EXPECT_EQ(failed, 1);
}

// A role that does not exist (28000) and a wrong password (28P01): two authentication failures.
void CauseAuthenticationFailures(const PostgresServer& pg) {
  pg.Exec("DO $$BEGIN CREATE ROLE bob LOGIN PASSWORD 'right'; EXCEPTION WHEN duplicate_object THEN NULL; END$$");
  const std::string hba = pg.dir() + "/data/pg_hba.conf";
  std::ifstream in(hba);
  std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (rest.find("host all bob") == std::string::npos) {
    std::ofstream(hba, std::ios::trunc) << "host all bob 127.0.0.1/32 scram-sha-256\n" << rest;
    pg.Exec("SELECT pg_reload_conf()");
    PollUntil([&] { return pg.Query("SELECT count(*) FROM pg_hba_file_rules WHERE 'bob' = ANY(user_name)") == "1"; });
  }
  const std::string base = "host=127.0.0.1 port=" + std::to_string(pg.port()) +
                           " dbname=postgres sslmode=disable gssencmode=disable ";
  EXPECT_THROW(pqxx::connection(base + "user=nosuchrole"), pqxx::broken_connection);
  EXPECT_THROW(pqxx::connection(base + "user=bob password=wrong"), pqxx::broken_connection);
}

class LogCounting : public ::testing::TestWithParam<std::string> {};

TEST_P(LogCounting, CountsTimeoutsDeadlocksAndAuthenticationFailuresExactly) {
  auto pg = StartLogging(GetParam());
  auto agent = StartAgent(Config(*pg));
  const std::string visible = "pg_log_visible{format=\"" + GetParam() + "\",reason=\"\"}";
  std::string body = ScrapeUntilValue(*agent, visible, 1);
  ASSERT_EQ(SampleValue(body, visible), 1) << body;
  const Counts before = Counts::From(body);

  CauseStatementTimeout(*pg);
  CauseDeadlock(*pg);
  CauseAuthenticationFailures(*pg);
  body = ScrapeUntil(*agent, [&](const std::string& b) {
    Counts c = Counts::From(b);
    return c.timeouts >= before.timeouts + 1 && c.deadlocks >= before.deadlocks + 1 && c.auth >= before.auth + 2;
  });
  // One more error, counted after the others: once it is in, nothing of the above can still be on its way.
  EXPECT_THROW(pg->Exec("SELECT 1/0"), pqxx::sql_error);
  body = ScrapeUntil(*agent, [&](const std::string& b) { return Counts::From(b).errors_22 >= before.errors_22 + 1; });
  const Counts after = Counts::From(body);
  EXPECT_EQ(after.timeouts - before.timeouts, 1) << body;
  EXPECT_EQ(after.deadlocks - before.deadlocks, 1) << body;
  EXPECT_EQ(after.auth - before.auth, 2) << body;
  EXPECT_EQ(after.errors_22 - before.errors_22, 1) << body;
  EXPECT_GE(Value(body, "pg_log_messages_total{severity=\"FATAL\",sqlstate_class=\"28\"}"), 2) << body;
  EXPECT_EQ(Value(body, "pg_log_malformed_records_total"), 0) << body;
  EXPECT_EQ(body.find("deadlock detected"), std::string::npos) << "message text must never be exported";
  EXPECT_EQ(body.find("bob"), std::string::npos) << "message text must never be exported";
}

INSTANTIATE_TEST_SUITE_P(Formats, LogCounting, ::testing::Values("jsonlog", "csvlog"),
                         [](const auto& info) { return info.param; });

TEST(LogCounting, HistoryIsNotCountedAndRotationKeepsCounting) {
  auto pg = StartLogging("jsonlog");
  CauseStatementTimeout(*pg);  // before the agent: history
  const std::string file = pg->Query("SHOW data_directory") + "/" + pg->Query("SELECT pg_current_logfile('jsonlog')");
  ASSERT_TRUE(PollUntil([&] {
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find("canceling statement due to statement timeout") != std::string::npos;
  }));
  auto agent = StartAgent(Config(*pg));
  std::string body = ScrapeUntilValue(*agent, "pg_log_visible{format=\"jsonlog\",reason=\"\"}", 1);
  EXPECT_EQ(Value(body, "pg_log_statement_timeouts_total"), 0) << body;

  // One timeout written to the old file just before rotation, one to the new file after it.
  CauseStatementTimeout(*pg);
  const std::string first = pg->Query("SELECT pg_current_logfile('jsonlog')");
  // The file name has seconds: within the same second the server reopens the same file.
  ASSERT_TRUE(PollUntil(
      [&] {
        pg->Exec("SELECT pg_rotate_logfile()");
        return pg->Query("SELECT pg_current_logfile('jsonlog')") != first;
      },
      10, 0.2));
  CauseStatementTimeout(*pg);
  body = ScrapeUntilValue(*agent, "pg_log_statement_timeouts_total", 2);
  EXPECT_EQ(Value(body, "pg_log_statement_timeouts_total"), 2) << body;
  EXPECT_EQ(Value(body, "pg_log_rotations_total"), 1) << body;
  EXPECT_EQ(Value(body, "pg_log_truncations_total"), 0) << body;
}

TEST(LogVisibility, EachWayOfNotReadingTheLogSaysWhy) {
  auto pg = PostgresServer::Start();  // the harness's server: logging_collector off
  auto agent = StartAgent(Config(*pg));
  std::string body = Scrape(*agent);
  EXPECT_EQ(Value(body, "pg_log_visible{format=\"\",reason=\"no_logging_collector\"}"), 0) << body;
  EXPECT_EQ(SampleValue(body, "pg_log_statement_timeouts_total"), std::nullopt) << "no counters without a log";
  EXPECT_NE(HttpGet(agent->url("/")).body.find("logging_collector is off"), std::string::npos);
  agent.reset();

  auto logging = StartLogging("stderr");
  agent = StartAgent(Config(*logging));
  body = Scrape(*agent);
  EXPECT_EQ(Value(body, "pg_log_visible{format=\"\",reason=\"no_csvlog_or_jsonlog\"}"), 0) << body;
  agent.reset();

  agent = StartAgent(Config(*pg, "    filesystem: {visible: no}\n"));
  body = Scrape(*agent);
  EXPECT_EQ(Value(body, "pg_log_visible{format=\"\",reason=\"disabled\"}"), 0) << body;
  EXPECT_NE(HttpGet(agent->url("/")).body.find("log not read: targets[main].filesystem.visible is no"),
            std::string::npos);
  agent.reset();

  agent = StartAgent(Config(*pg, "    logs: {enabled: false}\n"));
  body = Scrape(*agent);
  EXPECT_EQ(Value(body, "pg_log_visible{format=\"\",reason=\"disabled\"}"), 0) << body;
}

// `pgpulse check --connect` run as another OS user (nobody) against `pg`: its logs line.
std::string LogsLineAsNobody(const PostgresServer& pg) {
  char tmpl[] = "/tmp/pgpulse-logs-bin-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
  const std::string bin_dir = tmpl;
  // A copy of the binary where user nobody can run it (the build tree may sit in root's home).
  EXPECT_EQ(std::system(("chmod 755 '" + bin_dir + "' && cp '" PGPULSE_BINARY "' '" + bin_dir + "/pgpulse'").c_str()),
            0);
  CommandResult r = RunCommand(
      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin_dir + "/pgpulse", "check", "--connect"},
      {{"DATA_SOURCE_NAME", pg.uri()}});
  std::system(("rm -rf '" + bin_dir + "'").c_str());
  EXPECT_EQ(r.exit_status, 0) << r.output;
  size_t at = r.output.find("\nlogs ");
  if (at == std::string::npos) return "no logs line in:\n" + r.output;
  return r.output.substr(at + 1, r.output.find('\n', at + 1) - at - 1);
}

// Run as another OS user, the agent cannot read current_logfiles in the server's 0700 data directory; the server
// names the file (pg_current_logfile(), the DSN's role is a superuser), but that file is in the data directory too.
TEST(LogVisibility, AnotherOsUserIsToldPermissionDenied) {
  auto pg = StartLogging("jsonlog");
  const std::string data = pg->Query("SHOW data_directory");
  const std::string line = LogsLineAsNobody(*pg);
  EXPECT_NE(line.find(" skipped "), std::string::npos) << line;
  EXPECT_NE(line.find("cannot see the log file " + data + "/log/"), std::string::npos) << line;
  EXPECT_NE(line.find("Permission denied"), std::string::npos) << line;
}

// A log_directory outside the data directory that the agent's OS user may read: current_logfiles is still out of
// reach, and pg_current_logfile() names the file.
TEST(LogVisibility, AnotherOsUserReadsALogDirectoryOutsideTheDataDirectory) {
  char tmpl[] = "/tmp/pgpulse-logdir-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::system(("rm -rf '" + dir + "'").c_str()); }
  } cleanup{tmpl};
  ASSERT_EQ(RunCommand({"chown", "postgres", cleanup.dir}).exit_status, 0);
  ASSERT_EQ(RunCommand({"chmod", "0755", cleanup.dir}).exit_status, 0);
  auto pg = PostgresServer::Start({"logging_collector = on", "log_destination = 'jsonlog'", "lc_messages = 'C'",
                                   "log_directory = '" + cleanup.dir + "'", "log_file_mode = 0644"});
  const std::string line = LogsLineAsNobody(*pg);
  EXPECT_NE(line.find(" ok "), std::string::npos) << line;
}

}  // namespace
}  // namespace pgpulse::testing
