// Issue 17's signals made for real and scraped: what holds back the xmin horizon (a prepared transaction, an
// inactive logical slot's catalog_xmin, an open session, a standby with hot_standby_feedback), each table's own
// autovacuum thresholds (reloptions with autovacuum off for the table, and a table autovacuum really vacuums),
// wait events by name, and a subscription whose table copy keeps failing. Values are compared with what the
// server itself says, read just before and just after the scrape.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

double Num(const std::string& text) { return std::stod(text); }

double Value(const std::string& body, const std::string& series) {
  std::optional<double> v = SampleValue(body, series);
  EXPECT_TRUE(v.has_value()) << "no sample " << series;
  return v.value_or(std::nan(""));
}

// Each call is a transaction of its own on a fresh connection, so the server's next transaction ID moves on.
void BurnXids(const PostgresServer& pg, int n) {
  pqxx::connection c(pg.dsn());
  for (int i = 0; i < n; ++i) pqxx::nontransaction(c).exec("SELECT txid_current()");
}

// For cleanup in destructors, which must not throw; a failure is reported, not fatal.
void ExecQuietly(const PostgresServer& pg, const std::string& sql) {
  try {
    pg.Exec(sql);
  } catch (const std::exception& e) {
    ADD_FAILURE() << sql << ": " << e.what();
  }
}

// A statement running on its own connection in a thread (a sleep, a lock wait); cancelled and joined by the
// destructor, so it never outlives its test.
class Background {
 public:
  Background(const PostgresServer& pg, const std::string& application_name, std::string sql)
      : pg_(pg), application_name_(application_name) {
    thread_ = std::thread([this, dsn = pg.dsn() + " application_name=" + application_name, sql = std::move(sql)] {
      try {
        pqxx::connection c(dsn);
        pqxx::nontransaction(c).exec("SET statement_timeout = '60s'");
        pqxx::nontransaction(c).exec(sql);
      } catch (const std::exception&) {
        // Cancelled by the destructor, or its lock was released: either way done.
      }
      done_ = true;
    });
  }
  ~Background() {
    while (!done_) {
      try {
        pg_.Query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '" + application_name_ +
                  "'");
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    thread_.join();
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

 private:
  const PostgresServer& pg_;
  std::string application_name_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

class SignalsTest : public SharedAgentTest {
 protected:
  static void SetUpTestSuite() {
    // A prepared transaction needs max_prepared_transactions; a logical slot wal_level = logical. Autovacuum
    // looks at the database every second, so the test of a table it vacuums takes seconds, not minutes.
    pg_ = PostgresServer::Start({"max_prepared_transactions = 5", "wal_level = logical", "autovacuum_naptime = 1s"})
              .release();
    version_ = static_cast<int>(Num(pg_->Query("SHOW server_version_num")));
    const std::string cfg = "targets:\n  - name: main\n    dsn: \"" + pg_->uri() + "\"\n" +
                            "collectors:\n"
                            "  overrides:\n"
                            "    autovacuum_thresholds: {ttl: 0s}\n";
    agent_ = AgentProcess::Start({"--config.file=" + WriteTempFile("signals.yml", cfg)}).release();
  }

  static int version_;
};
int SignalsTest::version_ = 0;

TEST_F(SignalsTest, PreparedTransactionHoldsTheHorizonAndIsNamed) {
  pg_->Exec("CREATE TABLE IF NOT EXISTS prepared_target (id int)");
  const auto prepared_at = Clock::now();
  pg_->Exec("BEGIN; INSERT INTO prepared_target VALUES (1); PREPARE TRANSACTION 'pgpulse_forgotten'");
  struct Release {
    bool pending = true;
    ~Release() {
      if (pending) ExecQuietly(*pg_, "ROLLBACK PREPARED 'pgpulse_forgotten'");
    }
  } release;
  BurnXids(*pg_, 20);
  const std::string age = "SELECT age(transaction) FROM pg_prepared_xacts WHERE gid = 'pgpulse_forgotten'";
  const double before = Num(pg_->Query(age));
  std::string body = Scrape(*agent_);
  const double after = Num(pg_->Query(age));
  EXPECT_GE(before, 20);

  const double kind_age = Value(body, R"(pg_xmin_horizon_age_xids{kind="prepared_transaction"})");
  EXPECT_GE(kind_age, before) << body;
  EXPECT_LE(kind_age, after);
  const std::string holder =
      R"({kind="prepared_transaction",holder="pgpulse_forgotten",datname="postgres",usename="postgres",)"
      R"(state="prepared"})";
  EXPECT_EQ(Value(body, "pg_xmin_horizon_holder_age_xids" + holder), kind_age);
  const double seconds = Value(body, "pg_xmin_horizon_age_seconds{kind=\"prepared_transaction\"}");
  EXPECT_GT(seconds, 0);
  EXPECT_LE(seconds, SecondsSince(prepared_at) + 1);
  // Another collector, another transaction: its now() is a moment later.
  EXPECT_NEAR(Value(body, "pg_xmin_horizon_holder_age_seconds" + holder), seconds, 1);
  // Nothing else holds it: each kind has its series, at 0.
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_age_xids{kind="replication_slot"})"), 0);
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_age_xids{kind="standby"})"), 0);
  EXPECT_EQ(SampleValue(body, R"(pg_xmin_horizon_age_seconds{kind="standby"})"), std::nullopt);

  pg_->Exec("ROLLBACK PREPARED 'pgpulse_forgotten'");
  release.pending = false;
  body = Scrape(*agent_);
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_age_xids{kind="prepared_transaction"})"), 0);
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_age_seconds{kind="prepared_transaction"})"), 0);
  EXPECT_EQ(CountSamples(body, "pg_xmin_horizon_holder_age_xids"), 0) << body;
}

TEST_F(SignalsTest, InactiveLogicalSlotHoldsCatalogXmin) {
  pg_->Exec("SELECT pg_create_logical_replication_slot('pgpulse_held', 'test_decoding')");
  struct Drop {
    ~Drop() { ExecQuietly(*pg_, "SELECT pg_drop_replication_slot('pgpulse_held')"); }
  } drop;
  BurnXids(*pg_, 20);
  const std::string age = "SELECT age(catalog_xmin) FROM pg_replication_slots WHERE slot_name = 'pgpulse_held'";
  const double before = Num(pg_->Query(age));
  const std::string body = Scrape(*agent_);
  const double after = Num(pg_->Query(age));
  EXPECT_GE(before, 20);
  const double kind_age = Value(body, R"(pg_xmin_horizon_age_xids{kind="replication_slot_catalog"})");
  EXPECT_GE(kind_age, before) << body;
  EXPECT_LE(kind_age, after);
  // A logical slot has no xmin of its own, only catalog_xmin; a slot has no start time.
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_age_xids{kind="replication_slot"})"), 0);
  EXPECT_EQ(SampleValue(body, R"(pg_xmin_horizon_age_seconds{kind="replication_slot_catalog"})"), std::nullopt);
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_holder_age_xids{kind="replication_slot_catalog",holder="pgpulse_held",)"
                        R"(datname="postgres",usename="",state="inactive"})"),
            kind_age);
}

TEST_F(SignalsTest, OpenSessionHoldsTheHorizonWithItsDatabaseUserAndApplication) {
  pqxx::connection holder(pg_->dsn() + " application_name=horizon_holder");
  pqxx::transaction<pqxx::isolation_level::repeatable_read> snapshot(holder);
  snapshot.exec("SELECT 1");  // takes the snapshot, which pins backend_xmin
  const auto opened_at = Clock::now();
  BurnXids(*pg_, 20);
  const std::string age = "SELECT age(backend_xmin) FROM pg_stat_activity WHERE application_name = 'horizon_holder'";
  const double before = Num(pg_->Query(age));
  const std::string body = Scrape(*agent_);
  const double after = Num(pg_->Query(age));
  EXPECT_GE(before, 20);
  const std::string series = R"(pg_xmin_horizon_holder_age_xids{kind="session",holder="horizon_holder",)"
                             R"(datname="postgres",usename="postgres",state="idle in transaction"})";
  const double holder_age = Value(body, series);
  EXPECT_GE(holder_age, before) << body;
  EXPECT_LE(holder_age, after);
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_age_xids{kind="session"})"), holder_age);
  const double seconds = Value(body, R"(pg_xmin_horizon_age_seconds{kind="session"})");
  EXPECT_GT(seconds, 0);
  EXPECT_LE(seconds, SecondsSince(opened_at) + 1);
  // The agent's own session is never a holder.
  EXPECT_EQ(body.find("holder=\"pgpulse\""), std::string::npos);
}

TEST_F(SignalsTest, AutovacuumThresholdsComeFromTheTablesOwnReloptions) {
  // tuned: autovacuum off for it, thresholds of its own; plain: the server's settings.
  const std::string insert_options = version_ >= 130000 ? ", autovacuum_vacuum_insert_threshold = 100, "
                                                          "autovacuum_vacuum_insert_scale_factor = 0.5"
                                                        : "";
  pg_->Exec("DROP TABLE IF EXISTS av_tuned, av_plain");
  pg_->Exec(
      "CREATE TABLE av_tuned (id int) WITH (autovacuum_enabled = false, autovacuum_vacuum_threshold = 10, "
      "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_threshold = 7, "
      "autovacuum_analyze_scale_factor = 0" +
      insert_options + ")");
  pg_->Exec("CREATE TABLE av_plain (id int) WITH (autovacuum_enabled = false)");
  pg_->Exec("ALTER TABLE av_plain RESET (autovacuum_enabled)");
  pg_->Exec("INSERT INTO av_tuned SELECT generate_series(1, 10000)");
  pg_->Exec("VACUUM ANALYZE av_tuned");  // reltuples = 10000, nothing inserted since
  pg_->Exec("DELETE FROM av_tuned WHERE id <= 1000");
  struct Drop {
    ~Drop() { ExecQuietly(*pg_, "DROP TABLE IF EXISTS av_tuned, av_plain"); }
  } drop;

  const std::string tuned = R"({datname="postgres",schemaname="public",relname="av_tuned"})";
  const std::string plain = R"({datname="postgres",schemaname="public",relname="av_plain"})";
  std::string body;
  // The deleting backend's counts reach the statistics when it exits, a moment after the statement.
  ASSERT_TRUE(PollUntil(
      [&] {
        body = Scrape(*agent_);
        return SampleValue(body, "pg_table_autovacuum_dead_tuples" + tuned) == 1000.0;
      },
      10))
      << body;
  ASSERT_EQ(Num(pg_->Query("SELECT reltuples FROM pg_class WHERE relname = 'av_tuned'")), 10000);
  EXPECT_EQ(Value(body, "pg_table_autovacuum_enabled" + tuned), 0);
  EXPECT_DOUBLE_EQ(Value(body, "pg_table_autovacuum_vacuum_threshold_tuples" + tuned), 10 + 0.01 * 10000);
  EXPECT_DOUBLE_EQ(Value(body, "pg_table_autovacuum_vacuum_ratio" + tuned), 1000 / 110.0);
  EXPECT_DOUBLE_EQ(Value(body, "pg_table_autovacuum_analyze_threshold_tuples" + tuned), 7);
  EXPECT_EQ(Value(body, "pg_table_autovacuum_modified_tuples" + tuned),
            Num(pg_->Query("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'av_tuned'")));
  EXPECT_EQ(SampleValue(body, "pg_table_autovacuum_last_age_seconds" + tuned), std::nullopt);  // never
  if (version_ >= 130000) {
    EXPECT_DOUBLE_EQ(Value(body, "pg_table_autovacuum_insert_threshold_tuples" + tuned), 100 + 0.5 * 10000);
    EXPECT_EQ(Value(body, "pg_table_autovacuum_inserted_tuples" + tuned), 0);
  } else {
    EXPECT_EQ(SampleValue(body, "pg_table_autovacuum_insert_threshold_tuples" + tuned), std::nullopt);
  }

  // plain: the server's settings over its reltuples (never analyzed: 0), and autovacuum on.
  EXPECT_EQ(Value(body, "pg_table_autovacuum_enabled" + plain), 1);
  EXPECT_DOUBLE_EQ(Value(body, "pg_table_autovacuum_vacuum_threshold_tuples" + plain),
                   Num(pg_->Query("SELECT current_setting('autovacuum_vacuum_threshold')")));
  EXPECT_DOUBLE_EQ(Value(body, "pg_table_autovacuum_analyze_threshold_tuples" + plain),
                   Num(pg_->Query("SELECT current_setting('autovacuum_analyze_threshold')")));

  // Over its threshold, autovacuum (naptime 1s) vacuums plain: its ratio falls back and its last autovacuum shows.
  pg_->Exec("INSERT INTO av_plain SELECT generate_series(1, 500)");
  pg_->Exec("DELETE FROM av_plain");
  EXPECT_TRUE(PollUntil(
      [&] {
        body = Scrape(*agent_);
        return SampleValue(body, "pg_table_autovacuum_last_age_seconds" + plain).has_value();
      },
      30))
      << body;
  EXPECT_GE(Value(body, "pg_table_autovacuum_last_age_seconds" + plain), 0);
  EXPECT_LT(Value(body, "pg_table_autovacuum_last_age_seconds" + plain), 30);
  EXPECT_LT(Value(body, "pg_table_autovacuum_vacuum_ratio" + plain), 1);
  // tuned, with autovacuum off for it, is still over its threshold.
  EXPECT_GT(Value(body, "pg_table_autovacuum_vacuum_ratio" + tuned), 1);
  EXPECT_EQ(SampleValue(body, "pg_table_autovacuum_last_age_seconds" + tuned), std::nullopt);
}

TEST_F(SignalsTest, WaitEventsAreNamedNotOnlyTyped) {
  pg_->Exec("CREATE TABLE IF NOT EXISTS wait_target (id int)");
  pqxx::connection holder(pg_->dsn() + " application_name=lock_holder");
  pqxx::work lock(holder);
  lock.exec("LOCK TABLE wait_target IN ACCESS EXCLUSIVE MODE");
  Background waiter(*pg_, "lock_waiter", "SELECT count(*) FROM wait_target");
  Background sleeper(*pg_, "sleeper", "SELECT pg_sleep(60)");
  ASSERT_TRUE(PollUntil(
      [&] {
        return pg_->Query(
                   "SELECT count(*) FROM pg_stat_activity WHERE (application_name, wait_event) IN "
                   "(('lock_waiter', 'relation'), ('sleeper', 'PgSleep'))") == "2";
      },
      10));
  const std::string body = Scrape(*agent_);
  EXPECT_EQ(Value(body, R"(pg_wait_event_sessions{wait_event_type="Lock",wait_event="relation"})"), 1) << body;
  EXPECT_EQ(Value(body, R"(pg_wait_event_sessions{wait_event_type="Timeout",wait_event="PgSleep"})"), 1);
  // The lock holder is idle in its transaction, waiting for its client; plain idle sessions are left out.
  EXPECT_EQ(Value(body, R"(pg_wait_event_sessions{wait_event_type="Client",wait_event="ClientRead"})"), 1);
  lock.abort();
}

// A standby with hot_standby_feedback reports the snapshot of a query running on it to its primary, which then
// keeps the rows that query may still read: the primary sees that as kind standby, with no slot involved.
TEST(StandbyFeedbackTest, StandbyQueryHoldsThePrimarysHorizon) {
  auto primary = PostgresServer::Start();
  auto standby = PostgresServer::StartStandbyOf(
      *primary,
      {"cluster_name = 'feedback_standby'", "hot_standby_feedback = on", "wal_receiver_status_interval = 1s"});
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", primary->uri()}});
  ASSERT_TRUE(PollUntil(
      [&] {
        return primary->Query(
                   "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'feedback_standby'"
                   " AND state = 'streaming' AND backend_xmin IS NOT NULL") == "1";
      },
      30))
      << "the standby does not stream with feedback";

  pqxx::connection reader(standby->dsn() + " application_name=standby_reader");
  pqxx::transaction<pqxx::isolation_level::repeatable_read> snapshot(reader);
  snapshot.exec("SELECT 1");
  // The standby reports its oldest snapshot within wal_receiver_status_interval; the primary's xids move on.
  const std::string age =
      "SELECT age(backend_xmin) FROM pg_stat_replication WHERE application_name = 'feedback_standby'";
  ASSERT_TRUE(PollUntil(
      [&] {
        BurnXids(*primary, 5);
        return Num(primary->Query(age)) >= 30;
      },
      30))
      << "the standby's feedback does not hold the primary's horizon";
  const double before = Num(primary->Query(age));
  const std::string body = Scrape(*agent);
  const double after = Num(primary->Query(age));
  const double kind_age = Value(body, R"(pg_xmin_horizon_age_xids{kind="standby"})");
  EXPECT_GE(kind_age, before) << body;
  EXPECT_LE(kind_age, after);
  EXPECT_EQ(Value(body, R"(pg_xmin_horizon_holder_age_xids{kind="standby",holder="feedback_standby",datname="",)"
                        R"(usename="postgres",state="streaming"})"),
            kind_age);
  // The WAL sender carrying the feedback is not counted as a session too.
  EXPECT_LT(Value(body, R"(pg_xmin_horizon_age_xids{kind="session"})"), before);
  snapshot.abort();
}

// A subscription with two tables, one of which cannot be copied (the subscriber already has a row with the
// same key), between two databases of one server.
class StuckSubscriptionTest : public SharedAgentTest {
 protected:
  static void SetUpTestSuite() {
    pg_ = PostgresServer::Start({"wal_level = logical", "wal_retrieve_retry_interval = '1s'"}).release();
    pg_->Exec("CREATE TABLE ok_items (id int PRIMARY KEY); CREATE TABLE stuck_items (id int PRIMARY KEY)");
    pg_->Exec("INSERT INTO ok_items VALUES (1), (2); INSERT INTO stuck_items VALUES (1), (2)");
    pg_->Exec("CREATE PUBLICATION items_pub FOR TABLE ok_items, stuck_items");
    pg_->Exec("CREATE DATABASE subscriber");
    // Within one server the slot must exist before CREATE SUBSCRIPTION, which would otherwise wait for itself.
    pg_->Exec("SELECT pg_create_logical_replication_slot('items_sub', 'pgoutput')");
    Subscriber("CREATE TABLE ok_items (id int PRIMARY KEY); CREATE TABLE stuck_items (id int PRIMARY KEY)");
    Subscriber("INSERT INTO stuck_items VALUES (1)");
    Subscriber("CREATE SUBSCRIPTION items_sub CONNECTION 'host=127.0.0.1 port=" + std::to_string(pg_->port()) +
               " user=postgres dbname=postgres' PUBLICATION items_pub WITH (create_slot = false)");
    // Database-scoped collectors run in every database, the subscriber's included.
    const std::string cfg = "targets:\n  - name: main\n    dsn: \"" + pg_->uri() + "\"\n" +
                            "    databases: {discover: true, refresh: 1s}\n";
    agent_ = AgentProcess::Start({"--config.file=" + WriteTempFile("stuck-sub.yml", cfg)}).release();
  }
  static void Subscriber(const std::string& sql) {
    pqxx::connection c(pg_->dsn() + " dbname=subscriber");
    pqxx::nontransaction(c).exec(sql);
  }
  static std::string SubscriberQuery(const std::string& sql) {
    pqxx::connection c(pg_->dsn() + " dbname=subscriber");
    pqxx::result r = pqxx::nontransaction(c).exec(sql);
    return r.empty() || r[0][0].is_null() ? "" : r[0][0].c_str();
  }
};

TEST_F(StuckSubscriptionTest, TableWhoseCopyFailsStaysOutsideReady) {
  ASSERT_TRUE(PollUntil(
      [] { return SubscriberQuery("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate = 'r'") == "1"; }, 30))
      << "ok_items never became ready";
  const std::string sub = R"(datname="subscriber",subname="items_sub",)";
  std::string body;
  ASSERT_TRUE(PollUntil(
      [&] {
        body = Scrape(*agent_);
        return SampleValue(body, "pg_subscription_tables{" + sub + "state=\"ready\"}") == 1.0;
      },
      15))
      << body;
  // stuck_items stays outside ready however long we look: its copy fails on the duplicate key every retry.
  for (int i = 0; i < 3; ++i) {
    body = Scrape(*agent_);
    double outside = 0;
    for (const char* state : {"init", "data_copy", "synchronized"}) {
      outside += Value(body, "pg_subscription_tables{" + sub + "state=\"" + state + "\"}");
    }
    EXPECT_EQ(outside, 1) << body;
    EXPECT_EQ(Value(body, "pg_subscription_tables{" + sub + "state=\"ready\"}"), 1);
    EXPECT_EQ(Num(SubscriberQuery("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")), 1);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // The publisher's own database has no subscription: no series there.
  EXPECT_EQ(body.find(R"(pg_subscription_tables{datname="postgres")"), std::string::npos);
  EXPECT_NE(pg_->Log().find("duplicate key"), std::string::npos);
}

}  // namespace
}  // namespace pgpulse::testing
