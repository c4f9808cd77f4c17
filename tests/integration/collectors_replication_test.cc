// The replication collectors (queries/replication.yaml, queries/subscriptions.yaml) against a
// real primary with a real streaming standby, and a real logical replication subscription.

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

// Polls `done` every 100 ms until it holds or `seconds` pass; returns its last answer.
bool WaitUntil(const std::function<bool()>& done, double seconds) {
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

// The value of the one sample of `name` whose labels include every `key="value"` in `labels`.
std::optional<double> Sample(const std::string& body, const std::string& name, const std::vector<std::string>& labels) {
  std::istringstream in(body);
  std::optional<double> found;
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, name.size(), name) != 0 || line.size() == name.size()) continue;
    if (line[name.size()] != '{' && line[name.size()] != ' ') continue;
    bool all = true;
    for (const std::string& l : labels) all = all && line.find(l) != std::string::npos;
    if (!all) continue;
    if (found) return std::nullopt;  // ambiguous: the caller's labels must pick one series
    found = std::stod(line.substr(line.rfind(' ') + 1));
  }
  return found;
}

// For cleanup in destructors, which must not throw; a failure is reported, not fatal.
void ExecQuietly(const PostgresServer& pg, const std::string& sql) {
  try {
    pg.Exec(sql);
  } catch (const std::exception& e) {
    ADD_FAILURE() << sql << ": " << e.what();
  }
}

double Number(const PostgresServer& pg, const std::string& sql) { return std::stod(pg.Query(sql)); }

// The line `pgpulse check --connect` printed for one collector.
std::string CheckLine(const std::string& output, const std::string& collector) {
  size_t at = output.find("\n" + collector + " ");
  if (at == std::string::npos) return "";
  return output.substr(at + 1, output.find('\n', at + 1) - at - 1);
}

const std::string kStandby = "application_name=\"standby1\"";
const std::string kLoopback = "client_addr=\"127.0.0.1\"";

// One primary and one streaming standby for the suite; every test leaves replay running.
class ReplicationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    primary_ = PostgresServer::Start().release();
    // Reports every second (not 10 s), so the primary sees replay progress promptly.
    standby_ =
        PostgresServer::StartStandbyOf(*primary_, {"cluster_name = 'standby1'", "wal_receiver_status_interval = 1s"})
            .release();
    const bool streaming = WaitUntil(
        [] {
          return primary_->Query(
                     "SELECT count(*) FROM pg_stat_replication"
                     " WHERE application_name = 'standby1' AND state = 'streaming'") == "1";
        },
        30);
    if (!streaming) throw std::runtime_error("the standby never started streaming:\n" + standby_->Log());
    // A replayed commit gives pg_last_xact_replay_timestamp() a value.
    primary_->Exec("CREATE TABLE filler (id int, payload text)");
    if (!WaitCaughtUp()) throw std::runtime_error("the standby did not replay the first commit");
    primary_agent_ = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", primary_->uri()}}).release();
    standby_agent_ = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", standby_->uri()}}).release();
  }
  static void TearDownTestSuite() {
    delete primary_agent_;
    delete standby_agent_;
    delete standby_;
    delete primary_;
  }

  // Everything the primary has written so far is replayed on the standby, and the primary knows it.
  static bool WaitCaughtUp() {
    const std::string lsn = primary_->Query("SELECT pg_current_wal_lsn()");
    return WaitUntil(
        [&] {
          return standby_->Query("SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'") == "t" &&
                 primary_->Query("SELECT replay_lsn >= '" + lsn +
                                 "' FROM pg_stat_replication WHERE application_name = 'standby1'") == "t";
        },
        20);
  }

  static PostgresServer* primary_;
  static PostgresServer* standby_;
  static AgentProcess* primary_agent_;
  static AgentProcess* standby_agent_;
};
PostgresServer* ReplicationTest::primary_ = nullptr;
PostgresServer* ReplicationTest::standby_ = nullptr;
AgentProcess* ReplicationTest::primary_agent_ = nullptr;
AgentProcess* ReplicationTest::standby_agent_ = nullptr;

TEST_F(ReplicationTest, PrimaryShowsTheStandbyStreamingWithByteLags) {
  std::string body = Scrape(*primary_agent_);
  EXPECT_EQ(
      Sample(body, "pg_replication_standby_info", {kStandby, kLoopback, "state=\"streaming\"", "sync_state=\"async\""}),
      1.0)
      << body;
  for (const char* metric : {"pg_replication_standby_sent_lag_bytes", "pg_replication_standby_write_lag_bytes",
                             "pg_replication_standby_flush_lag_bytes", "pg_replication_standby_replay_lag_bytes"}) {
    std::optional<double> lag = Sample(body, metric, {kStandby, kLoopback});
    ASSERT_TRUE(lag) << metric << " missing:\n" << body;
    EXPECT_GE(*lag, 0) << metric;
  }
  std::optional<double> reply_age = Sample(body, "pg_replication_standby_reply_age_seconds", {kStandby});
  ASSERT_TRUE(reply_age) << body;
  EXPECT_GE(*reply_age, 0);
  EXPECT_LT(*reply_age, 10);  // the standby reports every second
  EXPECT_EQ(CountSamples(body, "pg_replication_replica_replay_lag_bytes"), 0);
  EXPECT_EQ(CountSamples(body, "pg_replication_wal_receiver_connected"), 0);

  std::string landing = HttpGet(primary_agent_->url("/")).body;
  EXPECT_NE(landing.find("<td>replication_replica</td><td>skipped</td>"), std::string::npos) << landing;
  EXPECT_NE(landing.find("runs on a replica only; this server is a primary"), std::string::npos) << landing;
}

TEST_F(ReplicationTest, StandbyRunsReplicaCollectorsAndSkipsPrimaryOnes) {
  std::string body = Scrape(*standby_agent_);
  EXPECT_EQ(Sample(body, "pg_replication_wal_receiver_connected", {"status=\"streaming\""}), 1.0) << body;
  std::optional<double> age = Sample(body, "pg_replication_wal_receiver_last_message_age_seconds", {});
  ASSERT_TRUE(age) << body;
  EXPECT_GE(*age, 0);
  EXPECT_EQ(SampleValue(body, "pg_replication_replica_replay_paused"), 0.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_replication_replica_replay_pause_requested"), 0.0);
  EXPECT_EQ(CountSamples(body, "pg_replication_standby_info"), 0);
  EXPECT_EQ(CountSamples(body, "pg_replication_standby_replay_lag_bytes"), 0);

  CommandResult check = AgentProcess::Run({"check", "--connect"}, {{"DATA_SOURCE_NAME", standby_->uri()}});
  EXPECT_NE(check.output.find(", replica\n"), std::string::npos) << check.output;
  for (const char* primary_only : {"replication_standbys", "replication_standby_states", "subscriptions"}) {
    std::string line = CheckLine(check.output, primary_only);
    EXPECT_NE(line.find(" skipped "), std::string::npos) << check.output;
    EXPECT_NE(line.find("runs on a primary only; this server is in recovery"), std::string::npos) << line;
  }
  for (const char* replica_only : {"replication_replica", "replication_wal_receiver", "replication_slots"}) {
    EXPECT_NE(CheckLine(check.output, replica_only).find(" ok "), std::string::npos) << check.output;
  }
}

TEST_F(ReplicationTest, RoleGaugeIsZeroOnThePrimaryAndOneOnTheStandby) {
  EXPECT_EQ(SampleValue(Scrape(*primary_agent_), "pg_replication_is_replica"), 0.0);
  EXPECT_EQ(SampleValue(Scrape(*standby_agent_), "pg_replication_is_replica"), 1.0);
}

TEST_F(ReplicationTest, PausedReplayShowsLagOnBothSidesAndClearsOnResume) {
  standby_->Exec("SELECT pg_wal_replay_pause()");
  struct Resume {
    ~Resume() { ExecQuietly(*standby_, "SELECT pg_wal_replay_resume()"); }
  } resume_at_exit;
  ASSERT_TRUE(WaitUntil([] { return standby_->Query("SELECT pg_get_wal_replay_pause_state()") == "paused"; }, 10));

  primary_->Exec(
      "CREATE TABLE paused_writes (id int, payload text);"
      "INSERT INTO paused_writes SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g");
  const std::string written = primary_->Query("SELECT pg_current_wal_lsn()");
  ASSERT_TRUE(
      WaitUntil([&] { return standby_->Query("SELECT pg_last_wal_receive_lsn() >= '" + written + "'") == "t"; }, 20));

  // While replay stands still, receive - replay only grows: the agent's value lies between two direct reads.
  const std::string lag_sql = "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())";
  const double before = Number(*standby_, lag_sql);
  std::string body = Scrape(*standby_agent_);
  const double after = Number(*standby_, lag_sql);
  std::optional<double> lag_bytes = SampleValue(body, "pg_replication_replica_replay_lag_bytes");
  ASSERT_TRUE(lag_bytes) << body;
  EXPECT_GT(*lag_bytes, 1'000'000);  // 20,000 rows of 100 bytes
  EXPECT_GE(*lag_bytes, before);
  EXPECT_LE(*lag_bytes, after);
  EXPECT_EQ(SampleValue(body, "pg_replication_replica_replay_paused"), 1.0);
  EXPECT_EQ(SampleValue(body, "pg_replication_replica_replay_pause_requested"), 1.0);
  std::optional<double> lag_seconds = SampleValue(body, "pg_replication_replica_replay_lag_seconds");
  ASSERT_TRUE(lag_seconds) << body;
  EXPECT_GT(*lag_seconds, 0);

  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  std::optional<double> later_seconds =
      SampleValue(Scrape(*standby_agent_), "pg_replication_replica_replay_lag_seconds");
  ASSERT_TRUE(later_seconds);
  EXPECT_GE(*later_seconds, *lag_seconds + 1.0);

  // The primary sees the same standby behind by at least what was written while it was paused.
  const std::string primary_lag_sql =
      "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
      " WHERE application_name = 'standby1'";
  const double primary_before = Number(*primary_, primary_lag_sql);
  std::string primary_body = Scrape(*primary_agent_);
  const double primary_after = Number(*primary_, primary_lag_sql);
  std::optional<double> primary_lag = Sample(primary_body, "pg_replication_standby_replay_lag_bytes", {kStandby});
  ASSERT_TRUE(primary_lag) << primary_body;
  EXPECT_GE(*primary_lag, *lag_bytes);
  EXPECT_GE(*primary_lag, primary_before);
  EXPECT_LE(*primary_lag, primary_after);

  standby_->Exec("SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(WaitUntil(
      [&] {
        std::string b = Scrape(*standby_agent_);
        return SampleValue(b, "pg_replication_replica_replay_lag_bytes") == 0.0 &&
               SampleValue(b, "pg_replication_replica_replay_lag_seconds") == 0.0 &&
               SampleValue(b, "pg_replication_replica_replay_paused") == 0.0;
      },
      20));
  EXPECT_TRUE(WaitUntil(
      [&] { return Sample(Scrape(*primary_agent_), "pg_replication_standby_replay_lag_bytes", {kStandby}) == 0.0; },
      20));
}

// The naive now() - pg_last_xact_replay_timestamp() grows while nothing is written on the primary;
// the collector's lag must stay 0 so that lag alerts do not fire on a healthy standby.
TEST_F(ReplicationTest, IdlePrimaryDoesNotMakeReplayLagGrow) {
  primary_->Exec("INSERT INTO filler VALUES (1, 'last commit before going idle')");
  ASSERT_TRUE(WaitCaughtUp());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const double naive = Number(*standby_, "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())");
  ASSERT_GT(naive, 2.5);
  std::string body = Scrape(*standby_agent_);
  EXPECT_EQ(SampleValue(body, "pg_replication_replica_replay_lag_seconds"), 0.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_replication_replica_replay_lag_bytes"), 0.0) << body;
}

TEST_F(ReplicationTest, InactiveSlotShowsTheWalItRetains) {
  primary_->Exec("SELECT pg_create_physical_replication_slot('test_slot', true)");
  struct Drop {
    ~Drop() { ExecQuietly(*primary_, "SELECT pg_drop_replication_slot('test_slot')"); }
  } drop_at_exit;
  for (int i = 0; i < 3; ++i) {
    primary_->Exec("INSERT INTO filler SELECT g, 'slot' FROM generate_series(1, 1000) g");
    primary_->Exec("SELECT pg_switch_wal()");
  }
  const std::string slot = "slot_name=\"test_slot\"";
  const std::string retained_sql =
      "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots"
      " WHERE slot_name = 'test_slot'";
  const double before = Number(*primary_, retained_sql);
  std::string body = Scrape(*primary_agent_);
  const double after = Number(*primary_, retained_sql);

  EXPECT_EQ(Sample(body, "pg_replication_slot_active", {slot, "slot_type=\"physical\""}), 0.0) << body;
  std::optional<double> retained = Sample(body, "pg_replication_slot_retained_wal_bytes", {slot});
  ASSERT_TRUE(retained) << body;
  EXPECT_GT(*retained, 2.0 * 16 * 1024 * 1024);  // three switches of 16 MB segments since the slot's restart_lsn
  EXPECT_GE(*retained, before);
  EXPECT_LE(*retained, after);
  EXPECT_EQ(Sample(body, "pg_replication_slot_wal_status", {slot}), 0.0);               // reserved: within max_wal_size
  EXPECT_FALSE(Sample(body, "pg_replication_slot_safe_wal_bytes", {slot}));             // max_slot_wal_keep_size = -1
  EXPECT_FALSE(Sample(body, "pg_replication_slot_confirmed_flush_lag_bytes", {slot}));  // physical
}

// Logical replication between two databases of one server: the publisher side shows the
// subscription's slot and WAL sender, the subscriber side the subscription itself.
class SubscriptionTest : public SharedAgentTest {
 protected:
  static void SetUpTestSuite() {
    pg_ = PostgresServer::Start({"wal_level = logical"}).release();
    pg_->Exec("CREATE TABLE items (id int PRIMARY KEY); CREATE PUBLICATION items_pub FOR TABLE items");
    pg_->Exec("CREATE DATABASE subscriber");
    // Within one server the slot must exist before CREATE SUBSCRIPTION, which would otherwise wait for itself.
    pg_->Exec("SELECT pg_create_logical_replication_slot('items_sub', 'pgoutput')");
    Subscriber("CREATE TABLE items (id int PRIMARY KEY)");
    Subscriber("CREATE SUBSCRIPTION items_sub CONNECTION 'host=127.0.0.1 port=" + std::to_string(pg_->port()) +
               " user=postgres dbname=postgres' PUBLICATION items_pub WITH (create_slot = false, copy_data = false)");
    agent_ = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->uri()}}).release();
  }
  static void Subscriber(const std::string& sql) {
    CommandResult r = RunCommand({"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                                  std::to_string(pg_->port()), "-U", "postgres", "-d", "subscriber", "-c", sql});
    if (r.exit_status != 0) throw std::runtime_error("subscriber: " + sql + ": " + r.output);
  }
  static std::string SubscriberQuery(const std::string& sql) {
    CommandResult r = RunCommand({"psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                                  std::to_string(pg_->port()), "-U", "postgres", "-d", "subscriber", "-c", sql});
    if (r.exit_status != 0) throw std::runtime_error("subscriber: " + sql + ": " + r.output);
    while (!r.output.empty() && r.output.back() == '\n') r.output.pop_back();
    return r.output;
  }
};

const std::string kSub = "subname=\"items_sub\"";

TEST_F(SubscriptionTest, RunningSubscriptionAndItsPublisherSide) {
  pg_->Exec("INSERT INTO items SELECT generate_series(1, 100)");
  ASSERT_TRUE(WaitUntil([] { return SubscriberQuery("SELECT count(*) FROM items WHERE id <= 100") == "100"; }, 20));
  std::string body = Scrape(*agent_);
  EXPECT_EQ(Sample(body, "pg_subscription_enabled", {kSub, "datname=\"subscriber\""}), 1.0) << body;
  EXPECT_EQ(Sample(body, "pg_subscription_apply_worker_running", {kSub}), 1.0);
  EXPECT_EQ(Sample(body, "pg_subscription_sync_workers", {kSub}), 0.0);
  EXPECT_EQ(Sample(body, "pg_subscription_apply_errors_total", {kSub}),
            Number(*pg_, "SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'items_sub'"));
  EXPECT_EQ(Sample(body, "pg_subscription_sync_errors_total", {kSub}), 0.0);  // copy_data = false: nothing to sync
  std::optional<double> age = Sample(body, "pg_subscription_last_message_age_seconds", {kSub});
  ASSERT_TRUE(age) << body;
  EXPECT_GE(*age, 0);
  std::optional<double> received = Sample(body, "pg_subscription_received_lsn_bytes", {kSub});
  ASSERT_TRUE(received) << body;
  EXPECT_GT(*received, 0);
  EXPECT_LE(*received, Number(*pg_, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"));

  // Publisher side: a logical slot in use, and a WAL sender named after the subscription.
  const std::string slot = "slot_name=\"items_sub\"";
  EXPECT_EQ(Sample(body, "pg_replication_slot_active", {slot, "slot_type=\"logical\"", "datname=\"postgres\""}), 1.0)
      << body;
  std::optional<double> unconfirmed = Sample(body, "pg_replication_slot_confirmed_flush_lag_bytes", {slot});
  ASSERT_TRUE(unconfirmed) << body;
  EXPECT_GE(*unconfirmed, 0);
  EXPECT_EQ(Sample(body, "pg_replication_standby_info", {"application_name=\"items_sub\"", "state=\"streaming\""}), 1.0)
      << body;
}

TEST_F(SubscriptionTest, ApplyErrorsAreCountedAndDisablingStopsTheWorker) {
  // A row the subscriber already has: applying the same insert fails on the primary key, again and again.
  Subscriber("INSERT INTO items VALUES (100000)");
  pg_->Exec("INSERT INTO items VALUES (100000)");
  ASSERT_TRUE(WaitUntil(
      [] {
        return pg_->Query("SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'items_sub'") !=
               "0";
      },
      20));
  std::string body = Scrape(*agent_);
  const double direct =
      Number(*pg_, "SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'items_sub'");
  std::optional<double> errors = Sample(body, "pg_subscription_apply_errors_total", {kSub});
  ASSERT_TRUE(errors) << body;
  EXPECT_GE(*errors, 1);
  EXPECT_LE(*errors, direct);

  Subscriber("ALTER SUBSCRIPTION items_sub DISABLE");
  EXPECT_TRUE(WaitUntil(
      [] {
        std::string b = Scrape(*agent_);
        return Sample(b, "pg_subscription_enabled", {kSub}) == 0.0 &&
               Sample(b, "pg_subscription_apply_worker_running", {kSub}) == 0.0 &&
               !Sample(b, "pg_subscription_last_message_age_seconds", {kSub});
      },
      20))
      << Scrape(*agent_);
  Subscriber("DELETE FROM items WHERE id = 100000");
  Subscriber("ALTER SUBSCRIPTION items_sub ENABLE");
}

}  // namespace
}  // namespace pgpulse::testing
