// The shipped alert rules (alerts/pgpulse-rules.yml.in, generated with only `for` durations shortened and a few
// thresholds lowered) loaded into a real Prometheus that scrapes one agent per throwaway PostgreSQL server and
// notifies a real Alertmanager, which posts to the test's webhook. First everything stays healthy and nothing
// may alert; then each problem is caused for real and its alert must reach the webhook, firing, with its labels.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/alert_rules.h"
#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/alertmanager_server.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/prometheus_server.h"
#include "tests/harness/webhook_receiver.h"

namespace pgpulse::testing {
namespace {

// Every `for` is shortened, not only those of the alerts caused here, so that any rule that would fire on a
// healthy setup does so within the healthy window. Thresholds are lowered only where the real value would take
// too long to reach (lock waits, replication lag); the connection ratios stay the shipped ones.
const char kThresholds[] = R"(exporter_down_for: 3s
collector_failing_for: 3s
postgres_down_for: 2s
connections_for: 2s
idle_in_transaction_for: 3s
long_transaction_for: 3s
long_query_for: 3s
lock_wait_seconds: 2
lock_wait_for: 2s
rollback_for: 3s
cache_for: 3s
replication_lag_bytes: 1048576
replication_lag_seconds: 2
replication_lag_for: 2s
standby_not_streaming_for: 3s
slot_inactive_for: 2s
slot_retained_for: 3s
wraparound_for: 3s
dead_tuples_for: 3s
table_bloat_for: 3s
temp_spill_for: 3s
checkpoints_for: 3s
archiving_failing_for: 2s
pending_restart_for: 3s
statement_slowdown_for: 3s
xmin_horizon_age_xids: 50
xmin_horizon_for: 2s
autovacuum_behind_for: 3s
subscription_tables_not_ready_for: 3s
)";

// The alerts this test causes; none of them may be pending or firing while everything is healthy.
const std::set<std::string> kInduced = {
    "PostgreSQLDown",
    "PostgreSQLConnectionsNearLimit",
    "PostgreSQLConnectionsExhausted",
    "PostgreSQLSessionsBlocked",
    "PostgreSQLReplicationSlotInactive",
    "PostgreSQLArchivingFailing",
    "PostgreSQLReplicationLagBytes",
    "PostgreSQLReplicationLagSeconds",
    "PostgreSQLXminHorizonHeldBack",
    "PostgreSQLAutovacuumBehind",
};

double Number(const std::string& text) { return text.empty() ? 0 : std::stod(text); }

// Waits until the webhook got alertname firing with (at least) the labels want. On timeout, fails with what the
// webhook got, the alerts Prometheus holds and what Prometheus answers for evidence_promql.
::testing::AssertionResult WaitForFiring(const WebhookReceiver& webhook, const PrometheusServer& prometheus,
                                         const std::string& alertname, const Labels& want,
                                         const std::string& evidence_promql, double timeout_seconds) {
  const bool arrived = PollUntil(
      [&] {
        for (const auto& alert : webhook.Received()) {
          if (alert.alertname == alertname && alert.status == "firing" && LabelsInclude(alert.labels, want))
            return true;
        }
        return false;
      },
      timeout_seconds);
  if (arrived) return ::testing::AssertionSuccess();
  std::string in_prometheus;
  try {
    in_prometheus = DescribeAlerts(prometheus.Alerts());
  } catch (const std::exception& e) {
    in_prometheus = e.what();
  }
  return ::testing::AssertionFailure() << alertname << " " << FormatLabels(want)
                                       << " did not reach the webhook firing within " << timeout_seconds
                                       << " s.\nWebhook received: " << DescribeAlerts(webhook.Received())
                                       << "\nPrometheus alerts: " << in_prometheus << "\n"
                                       << DescribeQuery(prometheus, evidence_promql);
}

// A SELECT blocked behind an ACCESS EXCLUSIVE lock: the holder's open transaction on a connection of this object,
// the waiting SELECT on a thread of its own with its own connection. The destructor terminates the waiter's
// backend from the test, ends the holder's transaction (which also lets through a waiter that had not begun to
// wait yet) and joins, so the thread never outlives the test, also when an assertion fails half-way.
class BlockedSelect {
 public:
  BlockedSelect(const PostgresServer& server, const std::string& dbname, const std::string& table)
      : server_(server),
        holder_(server.dsn() + " dbname=" + dbname + " application_name=e2e_lock_holder"),
        holder_tx_(std::make_unique<pqxx::work>(holder_)) {
    holder_tx_->exec("LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
    const std::string conninfo = server.dsn() + " dbname=" + dbname + " application_name=e2e_lock_waiter";
    waiter_ = std::thread([this, conninfo, table] {
      try {
        pqxx::connection connection(conninfo);
        waiter_pid_ = connection.backendpid();
        pqxx::nontransaction tx(connection);
        // A backstop only: the destructor ends the wait long before.
        tx.exec("SET statement_timeout = '120s'");
        tx.exec("SELECT count(*) FROM " + table);
      } catch (const std::exception&) {
        // Terminated by the destructor, as intended; a failure to connect shows as no lock wait in the test.
      }
      done_ = true;
    });
  }

  ~BlockedSelect() {
    PollUntil([this] { return waiter_pid_ != 0 || done_; }, 10);
    if (waiter_pid_ != 0 && !done_) {
      try {
        server_.Exec("SELECT pg_terminate_backend(" + std::to_string(waiter_pid_.load()) + ")");
      } catch (const std::exception& e) {
        ADD_FAILURE() << "cannot terminate the blocked SELECT: " << e.what();
      }
    }
    holder_tx_.reset();
    waiter_.join();
  }

  BlockedSelect(const BlockedSelect&) = delete;
  BlockedSelect& operator=(const BlockedSelect&) = delete;

 private:
  const PostgresServer& server_;
  pqxx::connection holder_;
  std::unique_ptr<pqxx::work> holder_tx_;
  std::thread waiter_;
  std::atomic<int> waiter_pid_{0};
  std::atomic<bool> done_{false};
};

// Idle client sessions held open until destroyed.
class IdleSessions {
 public:
  // Opens sessions to server until it has at least `client_backends` client backends (ours and others'),
  // at most `limit` of ours. Throws what libpqxx throws when the server refuses one.
  IdleSessions(const PostgresServer& server, int client_backends, int limit) {
    const std::string count = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'";
    while (static_cast<int>(sessions_.size()) < limit) {
      sessions_.push_back(std::make_unique<pqxx::connection>(server.dsn() + " application_name=e2e_idle"));
      pqxx::nontransaction tx(*sessions_.back());
      if (tx.exec(count)[0][0].as<int>() >= client_backends) break;
    }
  }
  int size() const { return static_cast<int>(sessions_.size()); }

 private:
  std::vector<std::unique_ptr<pqxx::connection>> sessions_;
};

// One server's agent and the job and instance labels Prometheus gives its samples.
struct Scraped {
  std::unique_ptr<AgentProcess> agent;
  std::string job;
  std::string instance;
};

Scraped StartAgent(const PostgresServer& server, const std::string& job, std::vector<std::string> args = {}) {
  Scraped s{AgentProcess::Start(std::move(args), {{"DATA_SOURCE_NAME", server.uri()}}), job, ""};
  s.instance = "127.0.0.1:" + std::to_string(s.agent->port());
  return s;
}

Labels Target(const Scraped& s, Labels more = {}) {
  more["job"] = s.job;
  more["instance"] = s.instance;
  return more;
}

int CountRuleGroups(const std::string& rule_file) {
  std::ifstream in(rule_file);
  int groups = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  - name: ", 0) == 0) ++groups;
  }
  return groups;
}

void ExecIn(const PostgresServer& server, const std::string& dbname, const std::string& sql) {
  pqxx::connection connection(server.dsn() + " dbname=" + dbname);
  pqxx::nontransaction(connection).exec(sql);
}

void Note(const std::string& what) { std::cout << "[ alerts   ] " << what << std::endl; }

TEST(AlertsE2eTest, ShippedRulesStaySilentWhenHealthyAndFireThroughAlertmanagerWhenCaused) {
  const auto test_start = Clock::now();
  const std::string rule_file = GenerateRules("alerts_e2e_rules", kThresholds);

  auto webhook = WebhookReceiver::Start();
  auto alertmanager = AlertmanagerServer::Start(webhook->url());

  // primary: archiving (healthy at first), a replication slot, lock waits, and the writes its standby lags on.
  // A prepared transaction (held to hold back the xmin horizon) needs max_prepared_transactions.
  auto primary =
      PostgresServer::Start({"archive_mode = on", "archive_command = '/bin/true'", "max_prepared_transactions = 5"});
  // matrix.alerts.pg12 and .pg18 run this test with PGPULSE_PG_MAJOR set.
  Note("PostgreSQL " + primary->Query("SHOW server_version"));
  if (const char* major = std::getenv("PGPULSE_PG_MAJOR")) {
    ASSERT_EQ(primary->Query("SHOW server_version_num").substr(0, 2), major);
  }
  primary->Exec("CREATE DATABASE app");
  // The locked table lives in a database of its own: database-scoped collectors run in the agent's database and
  // would otherwise queue behind the lock too.
  ExecIn(*primary, "app", "CREATE TABLE locked (id int)");
  primary->Exec("CREATE TABLE filler (id int, payload text)");
  // Autovacuum is off for this table and its own threshold is 10 dead tuples: deleting rows puts it over for good.
  primary->Exec(
      "CREATE TABLE e2e_behind (id int) WITH (autovacuum_enabled = false, autovacuum_vacuum_threshold = 10,"
      " autovacuum_vacuum_scale_factor = 0)");
  auto standby = PostgresServer::StartStandbyOf(*primary, {"cluster_name = 'e2e_standby'"});
  // busy: a small connection limit to fill, then stopped for PostgreSQLDown.
  auto busy = PostgresServer::Start({"max_connections = 20", "superuser_reserved_connections = 3"});

  // Healthy means streaming and caught up before anything is scraped. The standby has replayed no transaction
  // since it started (pg_last_xact_replay_timestamp() is NULL): the lag-seconds alert must fire all the same.
  ASSERT_TRUE(PollUntil(
      [&] {
        return standby->Query("SELECT status FROM pg_stat_wal_receiver") == "streaming" &&
               standby->Query("SELECT pg_last_wal_replay_lsn() >= '" + primary->Query("SELECT pg_current_wal_lsn()") +
                              "'") == "t";
      },
      30))
      << "the standby does not stream";

  // autovacuum_thresholds every scrape (its ttl is 1 min) so that the alert follows within the test's time.
  const Scraped on_primary = StartAgent(
      *primary, "pgpulse-primary",
      {"--config.file=" +
       WriteTempFile("alerts_e2e_primary.yml", "collectors:\n  overrides:\n    autovacuum_thresholds: {ttl: 0s}\n")});
  const Scraped on_standby = StartAgent(*standby, "pgpulse-standby");
  const Scraped on_busy = StartAgent(*busy, "pgpulse-busy");

  PrometheusServer::Options options;
  for (const Scraped* s : {&on_primary, &on_standby, &on_busy}) options.targets.push_back({s->job, s->instance});
  options.rule_files.push_back(rule_file);
  options.alertmanager_url = alertmanager->url();
  auto prometheus = PrometheusServer::Start(options);
  EXPECT_EQ(prometheus->RuleGroupsLoaded(), CountRuleGroups(rule_file));
  ASSERT_TRUE(prometheus->WaitForTargetsUp(15));
  // The healthy window starts once every agent has connected to its server and no PostgreSQLDown is pending:
  // on a loaded machine a first connection can take seconds, and pg_up is 0 until then.
  ASSERT_TRUE(PollUntil(
      [&] {
        return !prometheus->Query("count(pg_up == 1) == 3 unless on() ALERTS{alertname=\"PostgreSQLDown\"}").empty();
      },
      30))
      << "an agent did not connect to its server";
  Note("setup and first scrapes took " + std::to_string(SecondsSince(test_start)) + " s");

  // Healthy: ~10 s of evaluations (every `for` is at most 3 s). Polled throughout, so a short pending also counts.
  {
    SCOPED_TRACE("healthy setup");
    std::set<std::string> induced_seen, severe_firing, info_firing, other_pending;
    const auto window = Clock::now();
    while (SecondsSince(window) < 10) {
      for (const auto& alert : prometheus->Alerts()) {
        const std::string severity = alert.labels.count("severity") ? alert.labels.at("severity") : "";
        const std::string seen = alert.state + " " + FormatLabels(alert.labels);
        if (kInduced.count(alert.alertname)) {
          induced_seen.insert(seen);
        } else if (alert.state == "firing" && (severity == "warning" || severity == "critical")) {
          severe_firing.insert(seen);
        } else if (alert.state == "firing") {
          info_firing.insert(alert.alertname + " " + FormatLabels(alert.labels));
        } else {
          other_pending.insert(seen);
        }
      }
      SleepSeconds(0.25);
    }
    // The webhook is a second later than Prometheus (group_wait 1s).
    SleepSeconds(2);
    for (const auto& s : induced_seen) ADD_FAILURE() << "alert raised on a healthy setup: " << s;
    for (const auto& s : severe_firing) ADD_FAILURE() << "warning/critical alert firing on a healthy setup: " << s;
    for (const auto& alert : webhook->Received()) {
      const std::string severity = alert.labels.count("severity") ? alert.labels.at("severity") : "";
      EXPECT_FALSE(kInduced.count(alert.alertname)) << "notified on a healthy setup: " << FormatLabels(alert.labels);
      EXPECT_TRUE(severity != "warning" && severity != "critical")
          << "notified on a healthy setup: " << alert.status << " " << FormatLabels(alert.labels);
    }
    for (const auto& s : info_firing) Note("firing while healthy (info): " + s);
    for (const auto& s : other_pending) Note("pending while healthy: " + s);
    Note("healthy window passed at " + std::to_string(SecondsSince(test_start)) + " s");
  }
  ASSERT_FALSE(::testing::Test::HasFailure()) << "no point causing alerts on a setup that already alerts";

  // Cause everything at once; each problem is on its own server or touches nothing the others measure.
  const auto induced_at = Clock::now();

  // Replay paused first, so that every write below adds to the standby's lag.
  standby->Exec("SELECT pg_wal_replay_pause()");
  ASSERT_TRUE(PollUntil([&] { return standby->Query("SELECT pg_is_wal_replay_paused()") == "t"; }, 10));

  primary->Exec("SELECT pg_create_physical_replication_slot('e2e_slot', true)");

  primary->Exec("ALTER SYSTEM SET archive_command = '/bin/false'");
  primary->Exec("SELECT pg_reload_conf()");
  // A switch needs WAL written since the last one; the archiver picks up the reload on its own time.
  ASSERT_TRUE(PollUntil(
      [&] {
        primary->Exec("INSERT INTO filler VALUES (0, 'segment for the archiver')");
        primary->Exec("SELECT pg_switch_wal()");
        return Number(primary->Query("SELECT failed_count FROM pg_stat_archiver")) >= 1;
      },
      30, 1))
      << "archive_command '/bin/false' never failed";

  // About 3 MB of WAL (20,000 rows of 100 bytes) the standby receives but does not replay.
  primary->Exec("INSERT INTO filler SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g");

  auto blocked = std::make_unique<BlockedSelect>(*primary, "app", "locked");
  ASSERT_TRUE(PollUntil([&] { return primary->Query("SELECT count(*) FROM pg_locks WHERE NOT granted") == "1"; }, 10))
      << "the SELECT does not wait for the lock";

  // A prepared transaction nobody finishes, then transactions enough to age it past the horizon threshold.
  primary->Exec("BEGIN; INSERT INTO e2e_behind VALUES (0); PREPARE TRANSACTION 'e2e_forgotten'");
  {
    pqxx::connection c(primary->dsn());
    for (int i = 0; i < 100; ++i) pqxx::nontransaction(c).exec("SELECT txid_current()");
  }
  primary->Exec("INSERT INTO e2e_behind SELECT generate_series(1, 100)");
  primary->Exec("DELETE FROM e2e_behind");

  // 17 client backends (the agent's included) of the 20 - 3 non-superusers may use: over 0.8 and 0.95.
  auto idle = std::make_unique<IdleSessions>(*busy, 17, 19);
  EXPECT_EQ(Number(busy->Query("SELECT count(*) - 1 FROM pg_stat_activity WHERE backend_type = 'client backend'")), 17);
  Note("caused in " + std::to_string(SecondsSince(induced_at)) + " s (" + std::to_string(idle->size()) +
       " idle sessions held)");

  struct Expected {
    std::string alertname;
    Labels labels;
    std::string evidence;
  };
  const std::vector<Expected> expected = {
      {"PostgreSQLConnectionsNearLimit", Target(on_busy, {{"severity", "warning"}}),
       "sum by (job, instance) (pg_connections)"},
      {"PostgreSQLConnectionsExhausted", Target(on_busy, {{"severity", "critical"}}),
       "{__name__=~\"pg_connections_(max|reserved_superuser|reserved_privileged)\"}"},
      {"PostgreSQLSessionsBlocked", Target(on_primary, {{"datname", "app"}, {"severity", "warning"}}),
       "pg_locks_oldest_wait_age_seconds"},
      {"PostgreSQLReplicationSlotInactive",
       Target(on_primary, {{"slot_name", "e2e_slot"}, {"slot_type", "physical"}, {"severity", "warning"}}),
       "pg_replication_slot_active"},
      {"PostgreSQLArchivingFailing", Target(on_primary, {{"severity", "critical"}}),
       "{__name__=~\"pg_archiver_(last_attempt_failed|failed_total|archived_total)\"}"},
      {"PostgreSQLReplicationLagBytes", Target(on_standby, {{"severity", "warning"}}),
       "pg_replication_replica_replay_lag_bytes"},
      {"PostgreSQLReplicationLagSeconds", Target(on_standby, {{"severity", "warning"}}),
       "pg_replication_replica_replay_lag_seconds"},
      {"PostgreSQLXminHorizonHeldBack", Target(on_primary, {{"kind", "prepared_transaction"}, {"severity", "warning"}}),
       "pg_xmin_horizon_age_xids"},
      {"PostgreSQLAutovacuumBehind",
       Target(on_primary,
              {{"datname", "postgres"}, {"schemaname", "public"}, {"relname", "e2e_behind"}, {"severity", "warning"}}),
       "pg_table_autovacuum_vacuum_ratio"},
  };
  for (const auto& e : expected) {
    const double remaining = std::max(1.0, 40 - SecondsSince(induced_at));
    const ::testing::AssertionResult fired =
        WaitForFiring(*webhook, *prometheus, e.alertname, e.labels, e.evidence, remaining);
    EXPECT_TRUE(fired);
    if (fired) Note(e.alertname + " reached the webhook by " + std::to_string(SecondsSince(induced_at)) + " s");
  }
  Note("all caused alerts reached the webhook " + std::to_string(SecondsSince(induced_at)) + " s after causing them");

  // Annotations are templates too: rendered, with no template error and the runbook anchor of the alert.
  for (const auto& alert : webhook->Received()) {
    if (kInduced.count(alert.alertname)) ExpectAnnotationsRendered(alert);
  }

  // The horizon alert names the holder, the autovacuum one says autovacuum is off for the table: both from queries
  // Prometheus runs while rendering the description.
  for (const auto& alert : webhook->Received()) {
    const std::string description = alert.annotations.count("description") ? alert.annotations.at("description") : "";
    if (alert.alertname == "PostgreSQLXminHorizonHeldBack" && alert.labels.count("kind") &&
        alert.labels.at("kind") == "prepared_transaction") {
      EXPECT_NE(description.find("(oldest: e2e_forgotten in database postgres)"), std::string::npos) << description;
    }
    if (alert.alertname == "PostgreSQLAutovacuumBehind" && alert.labels.count("relname") &&
        alert.labels.at("relname") == "e2e_behind") {
      EXPECT_NE(description.find("autovacuum is off for it"), std::string::npos) << description;
    }
  }

  // Release the lock and the sessions, then take busy down.
  blocked.reset();
  idle.reset();
  const auto stopped_at = Clock::now();
  busy->Stop();
  EXPECT_TRUE(
      WaitForFiring(*webhook, *prometheus, "PostgreSQLDown", Target(on_busy, {{"severity", "critical"}}), "pg_up", 20));
  Note("PostgreSQLDown reached the webhook " + std::to_string(SecondsSince(stopped_at)) + " s after the stop");
  for (const auto& alert : webhook->Received()) {
    EXPECT_FALSE(alert.alertname == "PostgreSQLDown" && alert.labels.at("instance") != on_busy.instance)
        << FormatLabels(alert.labels);
    EXPECT_NE(alert.alertname, "PgpulseExporterDown") << "the agent kept serving: " << FormatLabels(alert.labels);
  }

  std::set<std::string> also;
  for (const auto& alert : webhook->Received()) {
    if (!kInduced.count(alert.alertname))
      also.insert(alert.status + " " + alert.alertname + " " + FormatLabels(alert.labels));
  }
  for (const auto& s : also) Note("also notified: " + s);
  Note("total " + std::to_string(SecondsSince(test_start)) + " s before teardown");
}

}  // namespace
}  // namespace pgpulse::testing
