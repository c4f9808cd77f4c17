// Activity collectors against real situations: blocked and idle sessions, a real deadlock, a spilling sort,
// pg_stat_statements entries, XID age, settings pending a restart, a sequence near its end. Each test creates
// the situation on a throwaway server and compares the scraped value with what the server itself says.

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

// One libpq session that can run a statement in the background (Send) while the test goes on. The destructor
// cancels whatever still runs and closes the connection, so a blocked or sleeping query never outlives its
// test, also when an assertion fails half-way.
class Session {
 public:
  explicit Session(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string error = PQerrorMessage(conn_);
      PQfinish(conn_);
      throw std::runtime_error("cannot connect: " + error);
    }
    pid_ = PQbackendPID(conn_);
  }
  ~Session() {
    if (busy_) {
      if (PGcancel* cancel = PQgetCancel(conn_)) {
        char err[256];
        PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
      }
      Finish(5);
    }
    PQfinish(conn_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int pid() const { return pid_; }

  // Runs sql to completion; throws with the server's message on error.
  void Exec(const std::string& sql) {
    Send(sql);
    std::string state = Finish(30);
    if (!state.empty()) throw std::runtime_error("'" + sql + "' failed with SQLSTATE " + state + ": " + error_);
  }

  // Starts sql and returns at once.
  void Send(const std::string& sql) {
    if (busy_) throw std::logic_error("a statement is still running on this session");
    if (!PQsendQuery(conn_, sql.c_str()))
      throw std::runtime_error(std::string("send failed: ") + PQerrorMessage(conn_));
    busy_ = true;
    error_.clear();
  }

  // Waits up to timeout_seconds for the statement started by Send. Returns "" on success, else the SQLSTATE of
  // the first error ("timeout" if it did not finish in time; the statement then keeps running).
  std::string Finish(double timeout_seconds) {
    auto start = Clock::now();
    std::string state;
    while (busy_) {
      if (!PQconsumeInput(conn_)) return "connection lost";
      while (busy_ && !PQisBusy(conn_)) {
        PGresult* r = PQgetResult(conn_);
        if (!r) {
          busy_ = false;
          break;
        }
        if (PQresultStatus(r) == PGRES_FATAL_ERROR && state.empty()) {
          const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
          state = s ? s : "unknown";
          error_ = PQresultErrorMessage(r);
        }
        PQclear(r);
      }
      if (!busy_) break;
      double left = timeout_seconds - SecondsSince(start);
      if (left <= 0) return "timeout";
      pollfd fd{PQsocket(conn_), POLLIN, 0};
      poll(&fd, 1, static_cast<int>(std::min(left, 0.1) * 1000) + 1);
    }
    return state;
  }

  const std::string& error() const { return error_; }

 private:
  PGconn* conn_;
  int pid_ = 0;
  bool busy_ = false;
  std::string error_;
};

// Creates a table used by one test and drops it again, whatever happens.
class ScratchTable {
 public:
  ScratchTable(const PostgresServer& pg, std::string name, const std::string& definition)
      : pg_(pg), name_(std::move(name)) {
    pg_.Exec("DROP TABLE IF EXISTS " + name_ + "; CREATE TABLE " + name_ + " " + definition);
  }
  ~ScratchTable() {
    try {
      pg_.Exec("DROP TABLE IF EXISTS " + name_);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot drop " << name_ << ": " << e.what();
    }
  }
  ScratchTable(const ScratchTable&) = delete;
  ScratchTable& operator=(const ScratchTable&) = delete;

 private:
  const PostgresServer& pg_;
  std::string name_;
};

double Num(const std::string& text) { return std::stod(text); }

class ActivityCollectorsTest : public SharedAgentTest {
 protected:
  static inline const std::string kLockDatabase = "activity_locks";

  static void SetUpTestSuite() {
    // A short deadlock_timeout makes the deadlock test fast.
    pg_ = PostgresServer::Start({"deadlock_timeout = '100ms'"}).release();
    pg_->Exec("CREATE DATABASE " + kLockDatabase);
    // ttl 0s so that every scrape sees the situation the test just created; the opt-in collectors enabled;
    // statements not cut to the default top 100 by whatever else ran on the server.
    std::string cfg = "targets:\n  - name: main\n    dsn: \"" + pg_->uri() + "\"\n" +
                      "collectors:\n"
                      "  enable: [statements_query, sequences]\n"
                      "  overrides:\n"
                      "    settings: {ttl: 0s}\n"
                      "    sequences: {ttl: 0s}\n"
                      "    statements_query: {ttl: 0s, max_rows: 5000}\n"
                      "    statements: {ttl: 0s, max_rows: 5000}\n";
    agent_ = AgentProcess::Start({"--config.file=" + WriteTempFile("activity.yml", cfg)}).release();
  }

  static std::string Scrape() {
    HttpResponse r = HttpGet(agent_->url("/metrics"));
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }

  static double Value(const std::string& body, const std::string& series) {
    std::optional<double> v = SampleValue(body, series);
    EXPECT_TRUE(v.has_value()) << "no sample " << series;
    return v.value_or(std::nan(""));
  }

  static std::string Conninfo(const std::string& application_name) {
    return pg_->dsn() + " application_name=" + application_name + " connect_timeout=10";
  }
};

// The locked table lives in a database of its own: database-scoped collectors (table sizes and the like)
// run in the agent's database and would otherwise queue behind the lock too, while every collector under
// test here is server-wide and reports the other database by name.
TEST_F(ActivityCollectorsTest, BlockedSessionsShowInLockWaitsAndBlockerFanOut) {
  const std::string db = " dbname=" + kLockDatabase;
  Session holder(Conninfo("lock_holder") + db);
  holder.Exec("CREATE TABLE IF NOT EXISTS lock_target (id int)");
  holder.Exec("BEGIN; LOCK TABLE lock_target IN ACCESS EXCLUSIVE MODE");
  Session waiter1(Conninfo("lock_waiter") + db);
  Session waiter2(Conninfo("lock_waiter") + db);
  waiter1.Send("SELECT count(*) FROM lock_target");
  waiter2.Send("SELECT count(*) FROM lock_target");
  // waitstart is set a moment after the wait begins.
  ASSERT_TRUE(PollUntil(
      [&] { return pg_->Query("SELECT count(*) FROM pg_locks WHERE NOT granted AND waitstart IS NOT NULL") == "2"; }));

  const std::string direct_age = "SELECT extract(epoch FROM now() - min(waitstart)) FROM pg_locks WHERE NOT granted";
  double before = Num(pg_->Query(direct_age));
  std::string body = Scrape();
  double after = Num(pg_->Query(direct_age));
  const std::string in_db = "{datname=\"" + kLockDatabase + "\"}";
  EXPECT_EQ(Value(body, "pg_locks_blocked_sessions" + in_db), 2.0);
  EXPECT_EQ(Value(body, R"(pg_locks_blocked_sessions{datname="postgres"})"), 0.0);
  double age1 = Value(body, "pg_locks_oldest_wait_age_seconds" + in_db);
  EXPECT_GT(age1, 0.0);
  EXPECT_GE(age1, before - 0.01);
  EXPECT_LE(age1, after + 0.01);
  const std::string blocker = "{pid=\"" + std::to_string(holder.pid()) + "\",datname=\"" + kLockDatabase +
                              R"(",usename="postgres",application_name="lock_holder"})";
  EXPECT_EQ(Value(body, "pg_locks_blocking_sessions" + blocker), 2.0) << body;
  EXPECT_EQ(CountSamples(body, "pg_locks_blocking_sessions"), 1);
  EXPECT_GT(Value(body, "pg_locks_blocker_transaction_age_seconds" + blocker), 0.0);
  const std::string locks = "pg_locks{datname=\"" + kLockDatabase + "\",locktype=\"relation\",";
  EXPECT_EQ(Value(body, locks + R"(mode="AccessExclusiveLock",granted="true"})"), 1.0);
  EXPECT_EQ(Value(body, locks + R"(mode="AccessShareLock",granted="false"})"), 2.0);
  EXPECT_EQ(Value(body, "pg_connections{datname=\"" + kLockDatabase +
                            R"(",usename="postgres",state="active",wait_event_type="Lock"})"),
            2.0);
  EXPECT_EQ(Value(body, "pg_connections_by_application{datname=\"" + kLockDatabase +
                            R"(",application_name="lock_waiter",state="active"})"),
            2.0);

  // Every metric of this file present at once, label values with odd characters included (query text).
  std::string path = WriteTempFile("activity-scrape.txt", body);
  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  CommandResult promtool = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(promtool.exit_status, 0) << promtool.output;
  EXPECT_EQ(promtool.output, "");

  SleepSeconds(1.0);
  double age2 = Value(Scrape(), "pg_locks_oldest_wait_age_seconds" + in_db);
  EXPECT_GE(age2 - age1, 0.9);

  holder.Exec("ROLLBACK");
  EXPECT_EQ(waiter1.Finish(10), "");
  EXPECT_EQ(waiter2.Finish(10), "");
  body = Scrape();
  EXPECT_EQ(Value(body, "pg_locks_blocked_sessions" + in_db), 0.0);
  EXPECT_EQ(Value(body, "pg_locks_oldest_wait_age_seconds" + in_db), 0.0);
  EXPECT_EQ(CountSamples(body, "pg_locks_blocking_sessions"), 0);
}

TEST_F(ActivityCollectorsTest, IdleInTransactionSessionIsCountedWithItsAge) {
  Session idle(Conninfo("idle_tx"));
  idle.Exec("BEGIN; SELECT 1");
  auto start = Clock::now();
  SleepSeconds(1.5);
  double waited = SecondsSince(start);
  std::string body = Scrape();
  EXPECT_EQ(
      Value(
          body,
          R"(pg_connections{datname="postgres",usename="postgres",state="idle in transaction",wait_event_type="Client"})"),
      1.0)
      << body;
  EXPECT_EQ(
      Value(
          body,
          R"(pg_connections_by_application{datname="postgres",application_name="idle_tx",state="idle in transaction"})"),
      1.0);
  double idle_age = Value(body, R"(pg_activity_oldest_idle_in_transaction_age_seconds{datname="postgres"})");
  EXPECT_GE(idle_age, waited);
  EXPECT_LT(idle_age, waited + 5);
  EXPECT_GE(Value(body, R"(pg_activity_oldest_transaction_age_seconds{datname="postgres"})"), idle_age);

  idle.Exec("COMMIT");
  body = Scrape();
  EXPECT_EQ(
      SampleValue(
          body,
          R"(pg_connections{datname="postgres",usename="postgres",state="idle in transaction",wait_event_type="Client"})"),
      std::nullopt);
  EXPECT_EQ(Value(body, R"(pg_activity_oldest_idle_in_transaction_age_seconds{datname="postgres"})"), 0.0);
}

TEST_F(ActivityCollectorsTest, RunningQueryAgeIsReported) {
  Session sleeper(Conninfo("sleeper"));
  auto start = Clock::now();
  sleeper.Send("SELECT pg_sleep(60)");
  ASSERT_TRUE(PollUntil([&] {
    return pg_->Query(
               "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(60)'") == "1";
  }));
  SleepSeconds(1.2);
  double upper = SecondsSince(start);
  std::string body = Scrape();
  double age = Value(body, R"(pg_activity_oldest_query_age_seconds{datname="postgres"})");
  EXPECT_GE(age, 1.2);
  EXPECT_LT(age, upper + 5);
  EXPECT_EQ(
      Value(body, R"(pg_connections_by_application{datname="postgres",application_name="sleeper",state="active"})"),
      1.0);
}

TEST_F(ActivityCollectorsTest, StatementCallsMatchPgStatStatements) {
  ScratchTable table(*pg_, "stmt_marker_tbl", "(id int)");
  pg_->Exec("INSERT INTO stmt_marker_tbl VALUES (1), (2), (3)");
  const int kCalls = 7;
  {
    Session s(Conninfo("statements"));
    for (int i = 0; i < kCalls; ++i) s.Exec("SELECT id FROM stmt_marker_tbl WHERE id > 0");
  }
  const std::string where = " FROM pg_stat_statements WHERE query LIKE 'SELECT id FROM stmt_marker_tbl%'";
  ASSERT_EQ(pg_->Query("SELECT count(*)" + where), "1");
  std::string queryid = pg_->Query("SELECT queryid" + where);
  ASSERT_EQ(pg_->Query("SELECT calls" + where), std::to_string(kCalls));

  std::string body = Scrape();
  double exec_seconds_after = Num(pg_->Query("SELECT total_exec_time / 1000" + where));
  const std::string labels = "{queryid=\"" + queryid + R"(",datname="postgres",usename="postgres",toplevel="true"})";
  EXPECT_EQ(Value(body, "pg_stat_statements_calls_total" + labels), kCalls) << body;
  EXPECT_EQ(Value(body, "pg_stat_statements_rows_total" + labels), 3.0 * kCalls);
  double exec_seconds = Value(body, "pg_stat_statements_exec_time_seconds_total" + labels);
  EXPECT_GT(exec_seconds, 0.0);
  EXPECT_NEAR(exec_seconds, exec_seconds_after, 1e-9);
  EXPECT_NEAR(Value(body, "pg_stat_statements_mean_exec_time_seconds" + labels), exec_seconds / kCalls, 1e-9);
  EXPECT_GE(Value(body, "pg_stat_statements_shared_blocks_hit_total" + labels) +
                Value(body, "pg_stat_statements_shared_blocks_read_total" + labels),
            kCalls);
  EXPECT_GE(Value(body, "pg_stat_statements_wal_bytes_total" + labels), 0.0);
  EXPECT_EQ(
      Value(body,
            "pg_stat_statements_query_info{queryid=\"" + queryid +
                R"(",datname="postgres",usename="postgres",query="SELECT id FROM stmt_marker_tbl WHERE id > $1"})"),
      1.0);

  EXPECT_EQ(Value(body, "pg_stat_statements_deallocations_total"),
            Num(pg_->Query("SELECT dealloc FROM pg_stat_statements_info")));
  EXPECT_NEAR(Value(body, "pg_stat_statements_stats_reset_timestamp_seconds"),
              Num(pg_->Query("SELECT extract(epoch FROM stats_reset) FROM pg_stat_statements_info")), 1e-3);
}

TEST_F(ActivityCollectorsTest, DeadlockIncrementsTheDatabaseCounter) {
  ScratchTable table(*pg_, "deadlock_tbl", "(id int PRIMARY KEY, v int)");
  pg_->Exec("INSERT INTO deadlock_tbl VALUES (1, 0), (2, 0)");
  const std::string series = R"(pg_database_deadlocks_total{datname="postgres"})";
  double before = Value(Scrape(), series);
  ASSERT_EQ(before, Num(pg_->Query("SELECT deadlocks FROM pg_stat_database WHERE datname = 'postgres'")));
  {
    Session a(Conninfo("deadlock_a"));
    Session b(Conninfo("deadlock_b"));
    // statement_timeout only guards the test against hanging if no deadlock were detected.
    a.Exec("SET statement_timeout = '20s'; BEGIN; UPDATE deadlock_tbl SET v = 1 WHERE id = 1");
    b.Exec("SET statement_timeout = '20s'; BEGIN; UPDATE deadlock_tbl SET v = 1 WHERE id = 2");
    a.Send("UPDATE deadlock_tbl SET v = 2 WHERE id = 2");
    ASSERT_TRUE(PollUntil([&] {
      return pg_->Query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = " + std::to_string(a.pid())) ==
             "Lock";
    }));
    b.Send("UPDATE deadlock_tbl SET v = 2 WHERE id = 1");
    std::string state_a = a.Finish(20);
    std::string state_b = b.Finish(20);
    EXPECT_TRUE((state_a == "40P01" && state_b.empty()) || (state_a.empty() && state_b == "40P01"))
        << "a: " << state_a << " " << a.error() << "\nb: " << state_b << " " << b.error();
    a.Exec("ROLLBACK");
    b.Exec("ROLLBACK");
  }  // Backends flush their pending statistics when they exit.
  double now = before;
  EXPECT_TRUE(PollUntil([&] {
    now = Value(Scrape(), series);
    return now != before;
  }));
  EXPECT_EQ(now, before + 1);
  EXPECT_EQ(now, Num(pg_->Query("SELECT deadlocks FROM pg_stat_database WHERE datname = 'postgres'")));
}

TEST_F(ActivityCollectorsTest, SpillingSortCountsTempFilesAndBytes) {
  const std::string files = R"(pg_database_temp_files_total{datname="postgres"})";
  const std::string bytes = R"(pg_database_temp_bytes_total{datname="postgres"})";
  std::string body = Scrape();
  double files_before = Value(body, files);
  double bytes_before = Value(body, bytes);
  {
    Session s(Conninfo("spill"));
    s.Exec("SET work_mem = '64kB'");
    s.Exec("SELECT count(*) FROM (SELECT g FROM generate_series(1, 300000) g ORDER BY g DESC OFFSET 1) s");
  }
  EXPECT_TRUE(PollUntil([&] {
    body = Scrape();
    return Value(body, files) > files_before && Value(body, bytes) > bytes_before;
  }));
  // 300,000 sorted integers take well over a megabyte of temporary files.
  EXPECT_GT(Value(body, bytes) - bytes_before, 1e6);
  EXPECT_EQ(Value(body, files), Num(pg_->Query("SELECT temp_files FROM pg_stat_database WHERE datname = 'postgres'")));
  EXPECT_EQ(Value(body, bytes), Num(pg_->Query("SELECT temp_bytes FROM pg_stat_database WHERE datname = 'postgres'")));
}

TEST_F(ActivityCollectorsTest, XidAndMultixactAgesMatchTheServer) {
  ScratchTable table(*pg_, "mxid_tbl", "(id int PRIMARY KEY)");
  pg_->Exec("INSERT INTO mxid_tbl VALUES (1)");
  for (int i = 0; i < 5; ++i) pg_->Query("SELECT txid_current()");
  {
    // Two sessions share-locking one row make a multixact.
    Session a(Conninfo("mxid_a"));
    Session b(Conninfo("mxid_b"));
    a.Exec("BEGIN; SELECT * FROM mxid_tbl WHERE id = 1 FOR SHARE");
    b.Exec("BEGIN; SELECT * FROM mxid_tbl WHERE id = 1 FOR SHARE");
    a.Exec("COMMIT");
    b.Exec("COMMIT");
  }
  const std::string xid_age = "SELECT age(datfrozenxid) FROM pg_database WHERE datname = 'postgres'";
  const std::string template0_age = "SELECT age(datfrozenxid) FROM pg_database WHERE datname = 'template0'";
  double before = Num(pg_->Query(xid_age));
  double before_template0 = Num(pg_->Query(template0_age));
  std::string body = Scrape();
  double after = Num(pg_->Query(xid_age));
  double age = Value(body, R"(pg_database_xid_age{datname="postgres"})");
  EXPECT_GE(age, before);
  EXPECT_LE(age, after);
  EXPECT_GE(age, 5.0);
  EXPECT_DOUBLE_EQ(Value(body, R"(pg_database_xid_wraparound_ratio{datname="postgres"})"), age / 2147483648.0);
  double template0 = Value(body, R"(pg_database_xid_age{datname="template0"})");
  EXPECT_GE(template0, before_template0);
  EXPECT_LE(template0, Num(pg_->Query(template0_age)));

  double mxid = Num(pg_->Query("SELECT mxid_age(datminmxid) FROM pg_database WHERE datname = 'postgres'"));
  EXPECT_GE(mxid, 1.0);
  EXPECT_EQ(Value(body, R"(pg_database_mxid_age{datname="postgres"})"), mxid);
  EXPECT_DOUBLE_EQ(Value(body, R"(pg_database_mxid_wraparound_ratio{datname="postgres"})"), mxid / 2147483648.0);
}

TEST_F(ActivityCollectorsTest, SettingsInBaseUnitsAndPendingRestart) {
  std::string body = Scrape();
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="max_connections",unit=""})"),
            Num(pg_->Query("SHOW max_connections")));
  EXPECT_EQ(Value(body, R"(pg_connections_max)"), Num(pg_->Query("SHOW max_connections")));
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="shared_buffers",unit="bytes"})"),
            Num(pg_->Query("SELECT pg_size_bytes(current_setting('shared_buffers'))")));
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="work_mem",unit="bytes"})"),
            Num(pg_->Query("SELECT pg_size_bytes(current_setting('work_mem'))")));
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="checkpoint_timeout",unit="seconds"})"),
            Num(pg_->Query("SELECT extract(epoch FROM current_setting('checkpoint_timeout')::interval)")));
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="deadlock_timeout",unit="seconds"})"), 0.1);
  // The agent's own SET LOCAL statement_timeout is not the server's setting.
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="statement_timeout",unit="seconds"})"), 0.0);
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="log_min_duration_statement",unit="seconds"})"), -1.0);
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="fsync",unit=""})"), 0.0);
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="autovacuum",unit=""})"), 1.0);
  EXPECT_EQ(CountSamples(body, "pg_settings_value"),
            Num(pg_->Query("SELECT count(*) FROM pg_settings WHERE vartype IN ('bool', 'integer', 'real')")));
  EXPECT_EQ(Value(body, "pg_settings_pending_restart"), 0.0);
  double loaded = Value(body, "pg_settings_last_load_timestamp_seconds");

  struct ResetSharedBuffers {
    const PostgresServer& pg;
    ~ResetSharedBuffers() {
      try {
        pg.Exec("ALTER SYSTEM RESET shared_buffers");
        pg.Exec("SELECT pg_reload_conf()");
      } catch (const std::exception& e) {
        ADD_FAILURE() << "cannot reset shared_buffers: " << e.what();
      }
    }
  } reset{*pg_};
  pg_->Exec("ALTER SYSTEM SET shared_buffers = '32MB'");
  pg_->Exec("SELECT pg_reload_conf()");
  ASSERT_TRUE(PollUntil([&] { return pg_->Query("SELECT count(*) FROM pg_settings WHERE pending_restart") == "1"; }));
  EXPECT_TRUE(PollUntil([&] { return Value(Scrape(), "pg_settings_pending_restart") == 1.0; }));
  body = Scrape();
  EXPECT_GT(Value(body, "pg_settings_last_load_timestamp_seconds"), loaded);
  // The running value, not the one waiting for the restart.
  EXPECT_EQ(Value(body, R"(pg_settings_value{name="shared_buffers",unit="bytes"})"),
            Num(pg_->Query("SELECT pg_size_bytes(current_setting('shared_buffers'))")));

  pg_->Exec("ALTER SYSTEM RESET shared_buffers");
  pg_->Exec("SELECT pg_reload_conf()");
  EXPECT_TRUE(PollUntil([&] { return Value(Scrape(), "pg_settings_pending_restart") == 0.0; }));
}

TEST_F(ActivityCollectorsTest, SequenceNearItsEndShowsTheFractionUsed) {
  struct DropSequences {
    const PostgresServer& pg;
    ~DropSequences() {
      try {
        pg.Exec("DROP SEQUENCE IF EXISTS seq_up, seq_down, seq_cycle, seq_unused");
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    }
  } drop{*pg_};
  pg_->Exec("CREATE SEQUENCE seq_up MINVALUE 1 MAXVALUE 101; SELECT setval('seq_up', 91)");
  pg_->Exec("CREATE SEQUENCE seq_down INCREMENT -1 MINVALUE -100 MAXVALUE -1 START -1; SELECT nextval('seq_down')");
  pg_->Exec("CREATE SEQUENCE seq_cycle MAXVALUE 10 CYCLE; SELECT setval('seq_cycle', 9)");
  pg_->Exec("CREATE SEQUENCE seq_unused");
  std::string body = Scrape();
  EXPECT_DOUBLE_EQ(
      Value(body, R"(pg_sequence_used_ratio{datname="postgres",schemaname="public",sequencename="seq_up"})"), 0.9);
  EXPECT_DOUBLE_EQ(
      Value(body, R"(pg_sequence_used_ratio{datname="postgres",schemaname="public",sequencename="seq_down"})"), 0.0);
  EXPECT_EQ(
      SampleValue(body, R"(pg_sequence_used_ratio{datname="postgres",schemaname="public",sequencename="seq_cycle"})"),
      std::nullopt);
  EXPECT_EQ(
      SampleValue(body, R"(pg_sequence_used_ratio{datname="postgres",schemaname="public",sequencename="seq_unused"})"),
      std::nullopt);
  pg_->Exec("SELECT nextval('seq_down') FROM generate_series(1, 33)");
  EXPECT_DOUBLE_EQ(
      Value(Scrape(), R"(pg_sequence_used_ratio{datname="postgres",schemaname="public",sequencename="seq_down"})"),
      1.0 / 3);
}

}  // namespace
}  // namespace pgpulse::testing
