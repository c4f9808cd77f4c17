// --metrics.profile=postgres_exporter against the real thing: Debian's prometheus-postgres-exporter (0.11.1)
// and pgpulse scrape the same server; every family 0.11.1 serves by default must come from pgpulse with the
// same name, type, label names and label sets, and the gauges that should agree do.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/exporter_differential.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_exporter_process.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/slow_vacuum.h"

namespace pgpulse::testing {
namespace {

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

  EXPECT_GT(CompareFamilies(theirs, ours), 250);

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

// Small transactions on the primary and reads on the standby, until destroyed.
class Load {
 public:
  Load(const std::string& primary_dsn, const std::string& standby_dsn) {
    thread_ = std::thread([this, primary_dsn, standby_dsn] {
      pqxx::connection primary(primary_dsn), standby(standby_dsn);
      for (int i = 0; !stop_; ++i) {
        pqxx::nontransaction(primary).exec("UPDATE accounts SET balance = balance + 1 WHERE id = " +
                                           std::to_string(i % 2000 + 1));
        pqxx::nontransaction(primary).exec("INSERT INTO events (payload) VALUES ('load')");
        pqxx::nontransaction(standby).exec("SELECT count(*) FROM accounts WHERE balance > 0");
        ++rounds_;
      }
    });
  }
  ~Load() {
    stop_ = true;
    thread_.join();
  }
  int rounds() const { return rounds_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> rounds_{0};
  std::thread thread_;
};

// The differential test again, on a primary and its streaming standby while both are under load: the same families
// with the same labels on each, and every counter and gauge 0.11.1 reports lies between two pgpulse scrapes around it.
TEST(PostgresExporterDifferential, PrimaryAndStandbyUnderLoad) {
  if (!PostgresExporterProcess::Installed())
    GTEST_SKIP() << PostgresExporterProcess::kBinary
                 << " is not installed (Debian package prometheus-postgres-exporter)";
  auto primary = PostgresServer::Start();
  MakeActivity(*primary);
  auto standby = PostgresServer::StartStandbyOf(*primary);
  Load load(primary->dsn(), standby->dsn());
  // Until the load's own statistics are visible (backends report them about once a second).
  ASSERT_TRUE(PollUntil(
      [&] {
        return std::stoi(primary->Query("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'events'")) > 250;
      },
      20));
  for (const PostgresServer* server : {primary.get(), standby.get()}) {
    const bool is_standby = server == standby.get();
    SCOPED_TRACE(is_standby ? "standby" : "primary");
    auto pe = PostgresExporterProcess::Start(server->uri() + "?sslmode=disable");
    auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", server->dsn()}});
    ScrapeUntil(*agent,
                [](const std::string& b) { return b.find("pg_stat_user_tables_n_live_tup") != std::string::npos; });
    const int rounds_before = load.rounds();
    const auto before = ParseFamilies(Scrape(*agent));
    const std::string their_text = HttpGet(pe->url("/metrics")).body;
    const auto after = ParseFamilies(Scrape(*agent));
    const auto theirs = ParseFamilies(their_text);
    EXPECT_GT(load.rounds(), rounds_before) << "the load ran while the three scrapes were made";
    EXPECT_GT(CompareFamilies(theirs, after), 200) << their_text.substr(0, 2000);
    EXPECT_GT(CompareValuesBetween(theirs, before, after), 300);
    EXPECT_EQ(SampleValue(their_text, "pg_up"), 1.0);
    EXPECT_EQ(after.at("pg_exporter_last_scrape_error").samples.at(0).second, 0);
    // The load's writes show on both sides (the standby replays them).
    const auto& live = after.at("pg_stat_user_tables_n_tup_ins");
    double inserted = 0;
    for (const auto& [labels, value] : live.samples)
      if (labels.at("relname") == "events") inserted = value;
    if (!is_standby) {
      EXPECT_GT(inserted, 250);
    }
  }
}

// The opt-in stat_statements collector as 0.20 serves it (0.11.1 has none): the top statements by
// execution time with its names, labels and seconds, its flags honoured, checked against the view itself.
TEST_F(PostgresExporterProfile, StatStatementsServesTheTopStatementsWithItsFlags) {
  pg_->Exec("SELECT pg_stat_statements_reset()");
  for (int i = 0; i < 3; ++i) pg_->Exec("SELECT pg_sleep(0.1)");
  for (int i = 0; i < 20; ++i) pg_->Exec("SELECT count(*) FROM accounts WHERE balance > " + std::to_string(i));
  // The slowest statement of all, in a database the flags leave out.
  const std::string app_dsn = pg_->dsn() + " dbname=app";
  {
    pqxx::connection app(app_dsn);
    pqxx::nontransaction(app).exec("SELECT pg_sleep(0.5)");
  }
  const std::string sleep_id = pg_->Query(
      "SELECT queryid FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
      "WHERE query LIKE 'SELECT pg_sleep%' AND d.datname = 'postgres'");
  const double sleep_ms =
      std::stod(pg_->Query("SELECT total_exec_time FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                           "WHERE queryid = " +
                           sleep_id + " AND d.datname = 'postgres'"));
  auto agent = AgentProcess::Start(
      {"--metrics.profile=postgres_exporter", "--collector.stat_statements",
       "--collector.stat_statements.include_query", "--collector.stat_statements.query_length=12",
       "--collector.stat_statements.limit=2", "--collector.stat_statements.exclude_databases=app,template1"},
      {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const std::string body = ScrapeUntil(
      *agent, [](const std::string& b) { return b.find("pg_stat_statements_seconds_total") != std::string::npos; });
  const auto families = ParseFamilies(body);
  for (const char* name :
       {"pg_stat_statements_calls_total", "pg_stat_statements_seconds_total", "pg_stat_statements_rows_total",
        "pg_stat_statements_block_read_seconds_total", "pg_stat_statements_block_write_seconds_total"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(families.count(name)) << body.substr(0, 3000);
    const ParsedFamily& f = families.at(name);
    EXPECT_EQ(f.type, "counter");
    EXPECT_EQ(LabelNames(f), (std::set<std::string>{"user", "datname", "queryid"}));
    EXPECT_EQ(f.samples.size(), 2u) << "--collector.stat_statements.limit=2";
    for (const auto& [labels, value] : f.samples) {
      EXPECT_EQ(labels.at("datname"), "postgres") << "app is excluded";
      EXPECT_EQ(labels.at("user"), "postgres");
    }
  }
  const std::string key = "{user=\"postgres\",datname=\"postgres\",queryid=\"" + sleep_id + "\"}";
  EXPECT_EQ(SampleValue(body, "pg_stat_statements_calls_total" + key), 3.0) << body.substr(0, 3000);
  EXPECT_NEAR(SampleValue(body, "pg_stat_statements_seconds_total" + key).value_or(-1), sleep_ms / 1000, 0.001);
  EXPECT_EQ(SampleValue(body, "pg_stat_statements_rows_total" + key), 3.0);
  ASSERT_TRUE(families.count("pg_stat_statements_query_id"));
  EXPECT_EQ(families.at("pg_stat_statements_query_id").type, "counter");
  EXPECT_EQ(SampleValue(body, "pg_stat_statements_query_id{queryid=\"" + sleep_id + "\",query=\"SELECT pg_sl\"}"), 1.0)
      << "the text cut to --collector.stat_statements.query_length";
  EXPECT_EQ(SampleValue(body, "pg_scrape_collector_success{collector=\"stat_statements\"}"), 1.0);

  // Without include_query no text is served.
  auto plain = AgentProcess::Start({"--metrics.profile=postgres_exporter", "--collector.stat_statements"},
                                   {{"DATA_SOURCE_NAME", pg_->dsn()}});
  const std::string plain_body = ScrapeUntil(
      *plain, [](const std::string& b) { return b.find("pg_stat_statements_seconds_total") != std::string::npos; });
  EXPECT_EQ(plain_body.find("pg_stat_statements_query_id"), std::string::npos);
  EXPECT_TRUE(SampleValue(plain_body,
                          "pg_stat_statements_calls_total{user=\"postgres\",datname=\"app\","
                          "queryid=\"" +
                              pg_->Query("SELECT queryid FROM pg_stat_statements s JOIN "
                                         "pg_database d ON d.oid = s.dbid WHERE d.datname = 'app' AND query LIKE "
                                         "'SELECT pg_sleep%'") +
                              "\"}")
                  .has_value())
      << "app is served without the exclusion";
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

// Every metric postgres_exporter 0.20 serves by default (queries/postgres_exporter/default_metrics.tsv), each with
// exactly its labels, on a server where each has something to show: a standby streaming through a slot, a
// VACUUM in progress, a WAL file archived, a custom queries file loaded.
TEST(PostgresExporterProfileReference, EveryDefaultNameIsServed) {
  auto primary = PostgresServer::Start(
      {"archive_mode = on", "archive_command = 'true'", "max_slot_wal_keep_size = '1GB'", "max_wal_senders = 10"});
  MakeActivity(*primary);
  primary->Exec("SELECT pg_create_physical_replication_slot('standby_slot')");
  auto standby = PostgresServer::StartStandbyOf(*primary, {"primary_slot_name = 'standby_slot'"});
  primary->Exec("SELECT pg_switch_wal()");
  ASSERT_TRUE(PollUntil([&] { return primary->Query("SELECT archived_count FROM pg_stat_archiver") != "0"; }, 20));
  SlowVacuum vacuum(*primary, "slow");
  ASSERT_TRUE(vacuum.WaitScanning());
  const std::string queries =
      WriteTempFile("queries.yaml",
                    "pg_custom:\n  query: SELECT 1 AS one\n  metrics:\n    - one: {usage: GAUGE, description: one}\n");
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter", "--extend.query-path=" + queries},
                                   {{"DATA_SOURCE_NAME", primary->dsn()}});
  const auto ours = ParseFamilies(ScrapeUntil(*agent, [](const std::string& b) {
    return b.find("pg_stat_progress_vacuum_phase{") != std::string::npos &&
           b.find("pg_stat_replication_pg_wal_lsn_diff{") != std::string::npos;
  }));

  std::ifstream in(std::string(PGPULSE_SOURCE_DIR) + "/queries/postgres_exporter/default_metrics.tsv");
  ASSERT_TRUE(in) << "queries/postgres_exporter/default_metrics.tsv";
  int rows = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, labels, only;
    std::getline(fields, name, '\t');
    std::getline(fields, labels, '\t');
    std::getline(fields, only, '\t');
    SCOPED_TRACE(name);
    ++rows;
    auto found = ours.find(name);
    if (only == "before10") {
      EXPECT_EQ(found, ours.end()) << "served before PostgreSQL 10 only";
      continue;
    }
    if (found == ours.end()) {
      ADD_FAILURE() << "not served";
      continue;
    }
    std::set<std::string> want;
    std::istringstream split(labels == "-" ? "" : labels);
    for (std::string label; std::getline(split, label, ',');) want.insert(label);
    EXPECT_EQ(LabelNames(found->second), want);
    EXPECT_FALSE(found->second.samples.empty());
  }
  EXPECT_EQ(rows, 103);
}

TEST(PostgresExporterProfileFlag, UnknownProfileIsAClearError) {
  CommandResult r = AgentProcess::Run({"--metrics.profile=postgres-exporter"});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.output.find("--metrics.profile"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("postgres-exporter"), std::string::npos) << r.output;
}

TEST(PostgresExporterProfileFlag, ABadStatStatementsLimitIsAClearError) {
  CommandResult r = AgentProcess::Run({"check", "--metrics.profile=postgres_exporter", "--collector.stat_statements",
                                       "--collector.stat_statements.limit=-5"},
                                      {{"DATA_SOURCE_NAME", "host=127.0.0.1 port=1"}});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.output.find("--collector.stat_statements.limit: must be a whole number from 1 to 1000000, got '-5'"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace pgpulse::testing
