// --metrics.profile=postgres_exporter against the real thing: Debian's prometheus-postgres-exporter (0.11.1)
// and pgpulse scrape the same server; every family 0.11.1 serves by default must come from pgpulse with the
// same name, type, label names and label sets, and the gauges that should agree do.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_exporter_process.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/slow_vacuum.h"

namespace pgpulse::testing {
namespace {

using Labels = std::map<std::string, std::string>;

// Families 0.11.1 serves by default that the profile does not, each with why (the profile follows 0.20).
const std::map<std::string, std::string> kNotServed = {
    // 0.11.1 maps every column its pg_stat_database query finds; 0.20's stat_database collector serves a fixed
    // list, with active_time as pg_stat_database_active_time_seconds_total (seconds).
    {"pg_stat_database_active_time", "0.20 serves pg_stat_database_active_time_seconds_total"},
    {"pg_stat_database_checksum_failures", "not in 0.20's stat_database collector"},
    {"pg_stat_database_checksum_last_failure", "not in 0.20's stat_database collector"},
    {"pg_stat_database_idle_in_transaction_time", "not in 0.20's stat_database collector"},
    {"pg_stat_database_session_time", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions_abandoned", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions_fatal", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions_killed", "not in 0.20's stat_database collector"},
    // The exporter's own build info and Go/HTTP runtime: no PostgreSQL metric.
    {"postgres_exporter_build_info", "the exporter's own build"},
};

// 0.11.1 puts server="host:port" on every family of its built-in query path; 0.20's collectors dropped it and
// keep it only here.
const std::set<std::string> kKeepsServerLabel = {
    "pg_static",
    "pg_stat_database_conflicts_confl_tablespace",
    "pg_stat_database_conflicts_confl_lock",
    "pg_stat_database_conflicts_confl_snapshot",
    "pg_stat_database_conflicts_confl_bufferpin",
    "pg_stat_database_conflicts_confl_deadlock",
};

// Labels 0.20 added to a family.
const std::map<std::string, std::set<std::string>> kAddedLabels = {
    {"pg_stat_activity_count", {"usename", "application_name", "backend_type", "wait_event_type", "wait_event"}},
    {"pg_stat_activity_max_tx_duration",
     {"usename", "application_name", "backend_type", "wait_event_type", "wait_event"}},
};

bool Ignored(const std::string& name) {
  return name.rfind("go_", 0) == 0 || name.rfind("process_", 0) == 0 || name.rfind("promhttp_", 0) == 0;
}

std::set<std::string> LabelNames(const ParsedFamily& f) {
  std::set<std::string> names;
  for (const auto& [labels, value] : f.samples)
    for (const auto& [k, v] : labels) names.insert(k);
  return names;
}

// The label sets of `f` restricted to `names`.
std::set<Labels> LabelSets(const ParsedFamily& f, const std::set<std::string>& names) {
  std::set<Labels> sets;
  for (const auto& [labels, value] : f.samples) {
    Labels kept;
    for (const auto& [k, v] : labels)
      if (names.count(k)) kept[k] = v;
    sets.insert(kept);
  }
  return sets;
}

void MakeActivity(const PostgresServer& pg) {
  pg.Exec("CREATE TABLE accounts (id int PRIMARY KEY, balance int)");
  pg.Exec("CREATE TABLE events (id bigserial PRIMARY KEY, payload text)");
  pg.Exec("INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 2000) g");
  pg.Exec("INSERT INTO events (payload) SELECT repeat('x', 3000) FROM generate_series(1, 200)");
  pg.Exec("UPDATE accounts SET balance = balance + 1 WHERE id % 3 = 0");
  pg.Exec("DELETE FROM events WHERE id % 10 = 0");
  pg.Exec("ANALYZE accounts");
  pg.Exec("CREATE DATABASE app");
}

class PostgresExporterProfile : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PostgresExporterProcess::Installed())
      GTEST_SKIP() << PostgresExporterProcess::kBinary
                   << " is not installed (Debian package prometheus-postgres-exporter): differential test skipped";
    pg_ = PostgresServer::Start();
    MakeActivity(*pg_);
  }
  std::unique_ptr<PostgresServer> pg_;
};

TEST_F(PostgresExporterProfile, ServesEveryFamilyPostgresExporterServesByDefault) {
  // A session idle in a transaction, so stat_activity has more than one state in use.
  pqxx::connection held(pg_->dsn());
  pqxx::work tx(held);
  tx.exec("SELECT count(*) FROM accounts");

  auto pe = PostgresExporterProcess::Start(pg_->uri() + "?sslmode=disable");
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const std::string pe_text = HttpGet(pe->url("/metrics")).body;
  const std::string our_text = ScrapeUntil(
      *agent, [](const std::string& body) { return body.find("pg_stat_user_tables_n_live_tup") != std::string::npos; });
  const auto theirs = ParseFamilies(pe_text);
  const auto ours = ParseFamilies(our_text);
  ASSERT_GT(theirs.size(), 200u) << pe_text.substr(0, 2000);

  int compared = 0;
  for (const auto& [name, family] : theirs) {
    if (Ignored(name) || kNotServed.count(name)) continue;
    // 0.11.1 reports NaN while nothing was ever archived; 0.20 leaves the sample out then.
    if (name == "pg_stat_archiver_last_archive_age" && std::isnan(family.samples.at(0).second)) continue;
    SCOPED_TRACE(name);
    auto found = ours.find(name);
    ASSERT_NE(found, ours.end()) << "pgpulse does not serve " << name;
    const ParsedFamily& mine = found->second;
    EXPECT_EQ(mine.type, family.type);
    std::set<std::string> want = LabelNames(family);
    if (!kKeepsServerLabel.count(name)) want.erase("server");
    if (auto added = kAddedLabels.find(name); added != kAddedLabels.end())
      want.insert(added->second.begin(), added->second.end());
    EXPECT_EQ(LabelNames(mine), want);
    std::set<std::string> compare = LabelNames(family);
    compare.erase("server");
    ParsedFamily theirs_kept = family;
    // 0.11.1 has a row for shared objects (datid 0, datname ""), which 0.20 skips.
    theirs_kept.samples.erase(std::remove_if(theirs_kept.samples.begin(), theirs_kept.samples.end(),
                                             [](const auto& s) {
                                               auto d = s.first.find("datid");
                                               return d != s.first.end() && d->second == "0";
                                             }),
                              theirs_kept.samples.end());
    // Collector names differ by design: 0.11.1 had two (bgwriter, database), 0.20 one per collector.
    if (name.rfind("pg_scrape_collector_", 0) == 0) {
      EXPECT_EQ(LabelSets(mine, {"collector"}).count(Labels{{"collector", "stat_database"}}), 1u);
    } else {
      EXPECT_EQ(LabelSets(mine, compare), LabelSets(theirs_kept, compare));
    }
    if (kKeepsServerLabel.count(name)) {
      EXPECT_EQ(LabelSets(mine, {"server"}), LabelSets(family, {"server"}));
    }
    ++compared;
  }
  EXPECT_GT(compared, 250);

  // Values that must agree: every setting exactly, database sizes within 5%, the version strings.
  for (const auto& [name, family] : theirs) {
    // lib/pq sets extra_float_digits=2 for postgres_exporter's own session; the server's value is pgpulse's.
    if (name.rfind("pg_settings_", 0) != 0 || name == "pg_settings_extra_float_digits") continue;
    ASSERT_TRUE(ours.count(name)) << name;
    EXPECT_EQ(ours.at(name).samples.at(0).second, family.samples.at(0).second) << name;
  }
  for (const auto& [labels, value] : theirs.at("pg_database_size_bytes").samples) {
    bool matched = false;
    for (const auto& [l, v] : ours.at("pg_database_size_bytes").samples) {
      if (l.at("datname") != labels.at("datname")) continue;
      matched = true;
      EXPECT_NEAR(v, value, value * 0.05) << labels.at("datname");
    }
    EXPECT_TRUE(matched) << labels.at("datname");
  }
  EXPECT_EQ(LabelSets(ours.at("pg_static"), {"version", "short_version"}),
            LabelSets(theirs.at("pg_static"), {"version", "short_version"}));
  EXPECT_EQ(ours.at("pg_up").samples.at(0).second, 1);
  EXPECT_EQ(ours.at("pg_exporter_last_scrape_error").samples.at(0).second, 0);
  // Every table, with postgres_exporter's labels; pgpulse's own names are not served in this profile.
  EXPECT_EQ(LabelSets(ours.at("pg_stat_user_tables_n_live_tup"), {"datname", "schemaname", "relname"}),
            (std::set<Labels>{{{"datname", "postgres"}, {"schemaname", "public"}, {"relname", "accounts"}},
                              {{"datname", "postgres"}, {"schemaname", "public"}, {"relname", "events"}}}));
  EXPECT_EQ(ours.count("pg_database_backends"), 0u);
  EXPECT_EQ(ours.count("pg_info"), 0u);
  // The held session shows as idle in transaction in the database it is connected to.
  double idle_in_tx = 0;
  for (const auto& [l, v] : ours.at("pg_stat_activity_count").samples)
    if (l.at("datname") == "postgres" && l.at("state") == "idle in transaction") idle_in_tx += v;
  EXPECT_GE(idle_in_tx, 1);
}

TEST_F(PostgresExporterProfile, BothServesBothNameSetsOnce) {
  auto agent = AgentProcess::Start({"--metrics.profile=both"}, {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const auto ours = ParseFamilies(ScrapeUntil(
      *agent, [](const std::string& body) { return body.find("pg_stat_database_xact_commit") != std::string::npos; }));
  for (const char* name :
       {"pg_database_backends", "pg_database_xact_commit_total", "pg_info", "pg_stat_database_xact_commit",
        "pg_locks_count", "pg_settings_work_mem_bytes", "pg_stat_activity_count", "pg_exporter_scrapes_total",
        "pg_scrape_collector_success", "pg_static"})
    EXPECT_TRUE(ours.count(name)) << name;
  // A name both sets have is served once per series, by pgpulse's collector.
  std::set<Labels> seen;
  for (const auto& [labels, value] : ours.at("pg_database_size_bytes").samples)
    EXPECT_TRUE(seen.insert(labels).second) << "duplicate pg_database_size_bytes for " << labels.at("datname");
}

// stat_progress_vacuum is on by default in 0.20 (0.11.1 has no such collector): checked against its definitions.
TEST_F(PostgresExporterProfile, RunningVacuumShowsItsPhaseAndCounters) {
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", pg_->dsn()}});
  EXPECT_EQ(CountSamples(Scrape(*agent), "pg_stat_progress_vacuum_phase"), 0) << "no vacuum, no rows";
  std::string body;
  std::string pages;
  {
    SlowVacuum vacuum(*pg_, "slowvac");
    ASSERT_TRUE(vacuum.WaitScanning()) << "the vacuum never showed up in pg_stat_progress_vacuum";
    body = Scrape(*agent);
    pages = pg_->Query("SELECT pg_relation_size('slowvac') / current_setting('block_size')::int");
  }
  const auto families = ParseFamilies(body);
  const std::string rel = "{datname=\"postgres\",relname=\"slowvac\"";
  EXPECT_EQ(SampleValue(body, "pg_stat_progress_vacuum_phase" + rel + ",phase=\"scanning heap\"}"), 1.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_stat_progress_vacuum_phase" + rel + ",phase=\"vacuuming indexes\"}"), 0.0);
  EXPECT_EQ(CountSamples(body, "pg_stat_progress_vacuum_phase"), 7) << "one sample per phase";
  EXPECT_EQ(SampleValue(body, "pg_stat_progress_vacuum_heap_blks" + rel + "}"), std::stod(pages));
  EXPECT_EQ(SampleValue(body, "pg_stat_progress_vacuum_index_vacuums" + rel + "}"), 0.0);
  for (const char* name : {"pg_stat_progress_vacuum_heap_blks_scanned", "pg_stat_progress_vacuum_heap_blks_vacuumed",
                           "pg_stat_progress_vacuum_max_dead_tuples", "pg_stat_progress_vacuum_num_dead_tuples"}) {
    ASSERT_TRUE(families.count(name)) << name;
    EXPECT_EQ(families.at(name).type, "gauge") << name;
  }
  EXPECT_EQ(SampleValue(body, "pg_scrape_collector_success{collector=\"stat_progress_vacuum\"}"), 1.0);
}

// The opt-in collectors, turned on with their flags (0.11.1 has none of them: checked against 0.20's definitions).
TEST_F(PostgresExporterProfile, OptInCollectorsServeTheirNamesWhenSwitchedOn) {
  pg_->Exec("CREATE INDEX accounts_balance ON accounts (balance)");
  pg_->Exec("SELECT count(*) FROM accounts WHERE balance = 1");
  pqxx::connection held(pg_->dsn());
  pqxx::work tx(held);
  tx.exec("SELECT 1");  // a transaction left open: long_running_transactions counts it
  auto off = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const std::string defaults = Scrape(*off);
  EXPECT_EQ(defaults.find("pg_database_wraparound"), std::string::npos) << "off by default";
  EXPECT_EQ(defaults.find("pg_long_running_transactions"), std::string::npos) << "off by default";

  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter", "--collector.database_wraparound",
                                    "--collector.long_running_transactions", "--collector.statio_user_indexes",
                                    "--collector.stat_activity_autovacuum", "--collector.xlog_location",
                                    "--collector.stat_checkpointer", "--collector.process_idle"},
                                   {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const std::string body = Scrape(*agent);
  const auto families = ParseFamilies(body);
  const double frozen = std::stod(pg_->Query("SELECT age(datfrozenxid) FROM pg_database WHERE datname = 'postgres'"));
  auto wraparound = SampleValue(body, "pg_database_wraparound_age_datfrozenxid_seconds{datname=\"postgres\"}");
  ASSERT_TRUE(wraparound.has_value()) << body.substr(0, 2000);
  EXPECT_NEAR(*wraparound, frozen, 5);
  EXPECT_TRUE(families.count("pg_database_wraparound_age_datminmxid_seconds"));
  EXPECT_GE(SampleValue(body, "pg_long_running_transactions").value_or(0), 1.0);
  EXPECT_GE(SampleValue(body, "pg_long_running_transactions_oldest_timestamp_seconds").value_or(-1), 0.0);
  ASSERT_TRUE(families.count("pg_statio_user_indexes_idx_blks_hit_total"));
  EXPECT_EQ(families.at("pg_statio_user_indexes_idx_blks_hit_total").type, "counter");
  EXPECT_TRUE(SampleValue(body,
                          "pg_statio_user_indexes_idx_blks_read_total{schemaname=\"public\",relname=\"accounts\","
                          "indexrelname=\"accounts_balance\"}")
                  .has_value())
      << body.substr(0, 2000);
  // process_idle: a histogram per (state, application_name) of the idle sessions.
  ASSERT_TRUE(families.count("pg_process_idle_seconds")) << body.substr(0, 3000);
  EXPECT_EQ(families.at("pg_process_idle_seconds").type, "histogram");
  EXPECT_TRUE(SampleValue(body,
                          "pg_process_idle_seconds_bucket{state=\"idle in transaction\",application_name=\"\","
                          "le=\"+Inf\"}")
                  .has_value())
      << body.substr(0, 3000);
  // Before 10 (xlog) and from 17 (pg_stat_checkpointer) only: on 15 they serve nothing, and do not fail.
  EXPECT_FALSE(families.count("pg_xlog_location_bytes"));
  EXPECT_FALSE(families.count("pg_stat_checkpointer_num_timed_total"));
  EXPECT_EQ(SampleValue(body, "pg_exporter_last_scrape_error"), 0.0);
}

TEST_F(PostgresExporterProfile, PgpulseProfileServesNoPostgresExporterNames) {
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const auto ours = ParseFamilies(ScrapeUntil(
      *agent, [](const std::string& body) { return body.find("pg_database_backends") != std::string::npos; }));
  for (const char* name : {"pg_stat_database_xact_commit", "pg_locks_count", "pg_settings_work_mem_bytes",
                           "pg_exporter_scrapes_total", "pg_static"})
    EXPECT_FALSE(ours.count(name)) << name;
}

// Replication families are not in 0.11.1's defaults, so they are checked against 0.20's definitions here.
TEST(PostgresExporterProfileReplication, StandbyAndSlotsUnderTheirNames) {
  auto primary = PostgresServer::Start();
  primary->Exec("SELECT pg_create_physical_replication_slot('spare', true)");
  auto standby = PostgresServer::StartStandbyOf(*primary);
  auto on_primary =
      AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", primary->dsn()}});
  auto on_standby =
      AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", standby->dsn()}});
  const auto p = ParseFamilies(ScrapeUntil(*on_primary, [](const std::string& body) {
    return body.find("pg_replication_slots_active") != std::string::npos;
  }));
  const auto s = ParseFamilies(ScrapeUntil(*on_standby, [](const std::string& body) {
    return body.find("pg_replication_is_replica 1") != std::string::npos;
  }));
  EXPECT_EQ(p.at("pg_replication_is_replica").samples.at(0).second, 0);
  EXPECT_EQ(p.at("pg_replication_lag_seconds").samples.at(0).second, 0);
  EXPECT_EQ(s.at("pg_replication_is_replica").samples.at(0).second, 1);
  EXPECT_GE(s.at("pg_replication_lag_seconds").samples.at(0).second, 0);
  EXPECT_EQ(s.at("pg_replication_lag_seconds").type, "gauge");
  const auto& active = p.at("pg_replication_slots_active");
  ASSERT_EQ(active.samples.size(), 1u);
  EXPECT_EQ(active.samples[0].first, (Labels{{"slot_name", "spare"}, {"database", ""}}));
  EXPECT_EQ(active.samples[0].second, 0);
  const auto& state = p.at("pg_replication_slots_slot_is_active");
  EXPECT_EQ(state.samples.at(0).first, (Labels{{"slot_name", "spare"}, {"slot_type", "physical"}}));
  EXPECT_GT(p.at("pg_replication_slots_slot_current_wal_lsn").samples.at(0).second, 0);
  // Reserved at creation, so its WAL status is known: one sample labelled with it, value 1.
  EXPECT_EQ(p.at("pg_replication_slots_wal_status").samples.at(0).first.at("wal_status"), "reserved");
  // The standby as the primary sees it, with postgres_exporter's labels.
  const std::string standby_seen = ScrapeUntil(*on_primary, [](const std::string& body) {
    return body.find("pg_stat_replication_pg_wal_lsn_diff{") != std::string::npos;
  });
  const auto lag = ParseFamilies(standby_seen).at("pg_stat_replication_pg_wal_lsn_diff");
  ASSERT_EQ(lag.samples.size(), 1u) << standby_seen;
  EXPECT_EQ(lag.samples[0].first.at("state"), "streaming");
  EXPECT_EQ(lag.samples[0].first.at("client_addr"), "127.0.0.1/32");
  for (const char* label : {"application_name", "slot_name", "pid"}) EXPECT_TRUE(lag.samples[0].first.count(label));
  EXPECT_EQ(p.at("pg_wal_segments").type, "gauge");
  EXPECT_GE(p.at("pg_wal_segments").samples.at(0).second, 1);
  EXPECT_GT(p.at("pg_wal_size_bytes").samples.at(0).second, 0);
  EXPECT_EQ(LabelSets(p.at("pg_roles_connection_limit"), {"rolname"}).count(Labels{{"rolname", "postgres"}}), 1u);
  // The flush LSN is only for an active slot, as postgres_exporter serves it.
  auto flush = p.find("pg_replication_slots_slot_confirmed_flush_lsn");
  EXPECT_TRUE(flush == p.end() || flush->second.samples.empty());
}

// The opt-in stat_wal_receiver collector on a standby that streams through a slot (postgres_exporter
// leaves out a receiver without one).
TEST(PostgresExporterProfileReplication, WalReceiverOfAStandbyWithASlot) {
  auto primary = PostgresServer::Start();
  primary->Exec("SELECT pg_create_physical_replication_slot('standby_slot')");
  auto standby = PostgresServer::StartStandbyOf(*primary, {"primary_slot_name = 'standby_slot'"});
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter", "--collector.stat_wal_receiver"},
                                   {{"DATA_SOURCE_NAME", standby->dsn()}});
  const std::string body = ScrapeUntil(
      *agent, [](const std::string& b) { return b.find("pg_stat_wal_receiver_received_tli{") != std::string::npos; },
      30);
  const auto families = ParseFamilies(body);
  ASSERT_TRUE(families.count("pg_stat_wal_receiver_received_tli")) << body.substr(0, 2000);
  const Labels want{{"upstream_host", "127.0.0.1"}, {"slot_name", "standby_slot"}, {"status", "streaming"}};
  EXPECT_EQ(families.at("pg_stat_wal_receiver_received_tli").samples.at(0).first, want);
  EXPECT_EQ(families.at("pg_stat_wal_receiver_received_tli").samples.at(0).second, 1);
  EXPECT_EQ(families.at("pg_stat_wal_receiver_latest_end_lsn").type, "counter");
  EXPECT_GT(families.at("pg_stat_wal_receiver_flushed_lsn").samples.at(0).second, 0);
  EXPECT_GT(families.at("pg_stat_wal_receiver_last_msg_receipt_time").samples.at(0).second, 1.6e9);
  auto node = families.find("pg_stat_wal_receiver_upstream_node");
  EXPECT_TRUE(node == families.end() || node->second.samples.empty()) << "from a repmgr slot name only";
}

TEST(PostgresExporterProfileFlag, UnknownProfileIsAClearError) {
  CommandResult r = AgentProcess::Run({"--metrics.profile=postgres-exporter"});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.output.find("--metrics.profile"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("postgres-exporter"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace pgpulse::testing
