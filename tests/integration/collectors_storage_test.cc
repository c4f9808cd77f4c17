// Storage collectors (queries/tables, bloat, cache, vacuum, io, checkpointer,
// wal, archiver .yaml) against situations created for real: each test makes
// the server do something and checks the metric against what the server's
// own views say.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/slow_vacuum.h"

namespace pgpulse::testing {
namespace {

// Cached collectors run on every scrape here, so each scrape shows the server as it is.
const char* const kCollectorsConfig = R"(collectors:
  enable: [table_bloat_pgstattuple]
  overrides:
    table_stats: {ttl: 0s}
    index_stats: {ttl: 0s}
    table_size: {ttl: 0s}
    index_size: {ttl: 0s}
    table_bloat: {ttl: 0s}
    index_bloat: {ttl: 0s}
    table_bloat_pgstattuple: {ttl: 0s}
    wal_directory: {ttl: 0s}
)";

std::unique_ptr<AgentProcess> StartAgent(const PostgresServer& pg, const std::string& user = "postgres") {
  std::string uri = "postgresql://" + user + "@127.0.0.1:" + std::to_string(pg.port()) + "/postgres";
  std::string cfg = WriteTempFile("storage-" + user + "-" + std::to_string(pg.port()) + ".yml",
                                  "targets:\n  - name: main\n    dsn: \"" + uri + "\"\n" + kCollectorsConfig);
  return AgentProcess::Start({"--config.file=" + cfg});
}

double Number(const PostgresServer& pg, const std::string& sql) {
  std::string v = pg.Query(sql);
  EXPECT_FALSE(v.empty()) << sql;
  return v.empty() ? NAN : std::stod(v);
}

// `metric{datname="postgres",schemaname="public",relname="REL"}`, with `extra` label pairs appended.
std::string Rel(const std::string& metric, const std::string& rel, const std::string& extra = "") {
  return metric + "{datname=\"postgres\",schemaname=\"public\",relname=\"" + rel + "\"" +
         (extra.empty() ? "" : "," + extra) + "}";
}

std::string Idx(const std::string& metric, const std::string& rel, const std::string& index) {
  return Rel(metric, rel, "indexrelname=\"" + index + "\"");
}

double Value(const std::string& body, const std::string& series) {
  std::optional<double> v = SampleValue(body, series);
  EXPECT_TRUE(v.has_value()) << "no sample " << series;
  return v.value_or(NAN);
}

bool CollectorOk(const std::string& body, const std::string& collector) {
  return SampleValue(body, "pgpulse_collector_success{collector=\"" + collector + "\",target=\"main\"}") == 1.0;
}

class StorageCollectors : public SharedServerTest {
 protected:
  // Per-table statistics reach the shared views asynchronously (when a session ends or about once
  // a second): waits until one of the table's counters shows what the test did.
  static bool TableCounterReaches(const std::string& table, const std::string& column, long expected) {
    return PollUntil([&] {
      return pg_->Query("SELECT " + column + " FROM pg_stat_user_tables WHERE relname = '" + table + "'") ==
             std::to_string(expected);
    });
  }
};

TEST_F(StorageCollectors, BloatedTableShowsEstimatedAndMeasuredBloat) {
  // Same shape and rows; "bloated" has every row updated three times without a vacuum, on an indexed
  // column so no update is HOT: the table and its index grow to about four times what the rows need.
  for (const std::string t : {"bloated", "control"}) {
    pg_->Exec("CREATE TABLE " + t + " (id int PRIMARY KEY, n int, payload text) WITH (autovacuum_enabled = off)");
    pg_->Exec("INSERT INTO " + t + " SELECT g, g, repeat('x', 100) FROM generate_series(1, 50000) g");
    pg_->Exec("CREATE INDEX " + t + "_n ON " + t + " (n)");
    pg_->Exec("ANALYZE " + t);
  }
  for (int i = 0; i < 3; ++i) pg_->Exec("UPDATE bloated SET n = n + 1");
  pg_->Exec("ANALYZE bloated");
  pg_->Exec("CREATE EXTENSION IF NOT EXISTS pgstattuple");
  ASSERT_TRUE(TableCounterReaches("bloated", "n_tup_upd", 150000));

  auto agent = StartAgent(*pg_);
  std::string body = Scrape(*agent);
  for (const char* c : {"table_bloat", "index_bloat", "table_bloat_pgstattuple", "table_stats"})
    EXPECT_TRUE(CollectorOk(body, c)) << c << "\n" << agent->Log();

  // Above the 1 MB floor and estimated from pg_stats: about 3/4 of the bloated table is waste.
  double est_bytes = Value(body, Rel("pg_table_bloat_estimated_bytes", "bloated"));
  double est_ratio = Value(body, Rel("pg_table_bloat_estimated_ratio", "bloated"));
  double control_ratio = Value(body, Rel("pg_table_bloat_estimated_ratio", "control"));
  EXPECT_GT(est_bytes, 10e6);
  EXPECT_GT(est_ratio, 0.6);
  EXPECT_LT(est_ratio, 0.9);
  EXPECT_LT(control_ratio, 0.1);
  EXPECT_GT(est_ratio, control_ratio);
  EXPECT_NEAR(est_bytes / est_ratio, Number(*pg_, "SELECT pg_relation_size('bloated')"), 8192 * 2);
  EXPECT_GT(Value(body, Idx("pg_index_bloat_estimated_ratio", "bloated", "bloated_n")), 0.4);
  EXPECT_LT(Value(body, Idx("pg_index_bloat_estimated_ratio", "control", "control_n")), 0.1);

  double dead = Value(body, Rel("pg_table_dead_tuples", "bloated"));
  EXPECT_GT(dead, 0);
  EXPECT_EQ(dead, Number(*pg_, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'bloated'"));
  EXPECT_EQ(Value(body, Rel("pg_table_dead_tuples", "control")), 0);

  // pgstattuple_approx reads every page here (no visibility map yet), so it is exact and equals a
  // direct call; the full pgstattuple scan agrees on the waste (it prunes as it reads, turning some
  // dead rows into free space, so it runs last and the sum is compared).
  double measured = Value(body, Rel("pg_table_bloat_measured_bytes", "bloated"));
  EXPECT_EQ(Value(body, Rel("pg_table_bloat_measured_dead_tuple_bytes", "bloated")),
            Number(*pg_, "SELECT dead_tuple_len FROM pgstattuple_approx('bloated')"));
  EXPECT_EQ(Value(body, Rel("pg_table_bloat_measured_free_bytes", "bloated")),
            Number(*pg_, "SELECT approx_free_space FROM pgstattuple_approx('bloated')"));
  EXPECT_EQ(Value(body, Rel("pg_table_bloat_measured_scanned_ratio", "bloated")), 1.0);
  EXPECT_GT(Value(body, Rel("pg_table_bloat_measured_ratio", "bloated")), 0.6);
  EXPECT_LT(Value(body, Rel("pg_table_bloat_measured_ratio", "control")), 0.1);
  EXPECT_NEAR(est_bytes, measured, 0.15 * measured) << "estimate and measurement disagree";
  double exact = Number(*pg_, "SELECT dead_tuple_len + free_space FROM pgstattuple('bloated')");
  EXPECT_NEAR(measured, exact, 0.05 * exact);

  // A role with only pg_monitor may run pgstattuple_approx (granted to pg_stat_scan_tables).
  pg_->Exec("CREATE ROLE storage_monitor LOGIN; GRANT pg_monitor TO storage_monitor");
  auto monitor = StartAgent(*pg_, "storage_monitor");
  std::string as_monitor = Scrape(*monitor);
  EXPECT_TRUE(CollectorOk(as_monitor, "table_bloat_pgstattuple")) << monitor->Log();
  EXPECT_GT(SampleValue(as_monitor, Rel("pg_table_bloat_measured_bytes", "bloated")).value_or(0), 10e6);
  // pg_stats shows it no column of a table it may not read: no estimate rather than a wrong one, until
  // it may (the estimates look each column up in pg_stats, so they see what the role sees).
  EXPECT_TRUE(CollectorOk(as_monitor, "table_bloat")) << monitor->Log();
  EXPECT_FALSE(SampleValue(as_monitor, Rel("pg_table_bloat_estimated_ratio", "bloated")).has_value());
  EXPECT_FALSE(SampleValue(as_monitor, Idx("pg_index_bloat_estimated_ratio", "bloated", "bloated_n")).has_value());
  pg_->Exec("GRANT SELECT ON bloated TO storage_monitor");
  auto granted = StartAgent(*pg_, "storage_monitor");
  const std::string as_granted = Scrape(*granted);
  EXPECT_EQ(SampleValue(as_granted, Rel("pg_table_bloat_estimated_ratio", "bloated")), est_ratio);
  EXPECT_EQ(SampleValue(as_granted, Idx("pg_index_bloat_estimated_ratio", "bloated", "bloated_n")),
            Value(body, Idx("pg_index_bloat_estimated_ratio", "bloated", "bloated_n")));
}

TEST_F(StorageCollectors, TableAndIndexFiguresMatchTheServer) {
  // Rows of 4 KB of incompressible text go to TOAST.
  pg_->Exec("CREATE TABLE sized (id int PRIMARY KEY, v int, payload text) WITH (autovacuum_enabled = off)");
  pg_->Exec(
      "INSERT INTO sized SELECT g, g % 100, (SELECT string_agg(md5(g::text || r::text), '') "
      "FROM generate_series(1, 128) r) FROM generate_series(1, 3000) g");
  pg_->Exec("DELETE FROM sized WHERE id % 3 = 0");
  pg_->Exec("CREATE INDEX sized_v ON sized (v)");
  // A unique index built concurrently over duplicates fails and stays behind, invalid.
  pg_->Exec("CREATE TABLE dups (k int) WITH (autovacuum_enabled = off); INSERT INTO dups VALUES (1), (1)");
  EXPECT_THROW(pg_->Exec("CREATE UNIQUE INDEX CONCURRENTLY dups_k ON dups (k)"), pqxx::sql_error);
  ASSERT_EQ(pg_->Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'dups_k'::regclass"), "f");
  ASSERT_TRUE(TableCounterReaches("sized", "n_tup_del", 1000));
  pg_->Exec("CREATE UNLOGGED TABLE sized_unlogged (id int PRIMARY KEY, payload text)");
  pg_->Exec("INSERT INTO sized_unlogged SELECT g, repeat(md5(g::text), 40) FROM generate_series(1, 500) g");
  pg_->Exec("CREATE MATERIALIZED VIEW sized_view AS SELECT id, v FROM sized");
  pg_->Exec("CREATE INDEX sized_view_v ON sized_view (v)");

  auto agent = StartAgent(*pg_);
  std::string body = Scrape(*agent);
  for (const char* c : {"table_stats", "table_size", "index_stats", "index_size"})
    EXPECT_TRUE(CollectorOk(body, c)) << c << "\n" << agent->Log();

  double total = Value(body, Rel("pg_table_total_size_bytes", "sized"));
  EXPECT_EQ(total, Number(*pg_, "SELECT pg_total_relation_size('sized')"));
  double heap = Value(body, Rel("pg_table_heap_size_bytes", "sized"));
  double toast = Value(body, Rel("pg_table_toast_size_bytes", "sized"));
  double indexes = Value(body, Rel("pg_table_indexes_size_bytes", "sized"));
  EXPECT_EQ(heap + toast + indexes, total);
  EXPECT_EQ(indexes, Number(*pg_, "SELECT pg_indexes_size('sized')"));
  EXPECT_EQ(toast, Number(*pg_, "SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'sized'"));
  EXPECT_GT(toast, 3000 * 4096 * 0.5) << "the payload should be out of line";
  // An unlogged table has an init fork, a materialized view is a table too: both as the server counts them.
  for (const char* rel : {"sized_unlogged", "sized_view"}) {
    EXPECT_EQ(Value(body, Rel("pg_table_total_size_bytes", rel)),
              Number(*pg_, std::string("SELECT pg_total_relation_size('") + rel + "')"))
        << rel;
    EXPECT_EQ(Value(body, Rel("pg_table_heap_size_bytes", rel)) + Value(body, Rel("pg_table_toast_size_bytes", rel)),
              Number(*pg_, std::string("SELECT pg_table_size('") + rel + "')"))
        << rel;
  }
  EXPECT_GT(Number(*pg_, "SELECT pg_relation_size('sized_unlogged_pkey', 'init')"), 0) << "no init fork to count";
  EXPECT_EQ(Value(body, Idx("pg_index_size_bytes", "sized", "sized_v")),
            Number(*pg_, "SELECT pg_relation_size('sized_v')"));

  EXPECT_EQ(Value(body, Rel("pg_table_live_tuples", "sized")),
            Number(*pg_, "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'sized'"));
  EXPECT_EQ(Value(body, Rel("pg_table_dead_tuples", "sized")),
            Number(*pg_, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'sized'"));
  EXPECT_EQ(Value(body, Rel("pg_table_dead_tuples", "sized")), 1000);
  EXPECT_EQ(Value(body, Rel("pg_table_tuples_inserted_total", "sized")), 3000);
  EXPECT_EQ(Value(body, Rel("pg_table_tuples_deleted_total", "sized")), 1000);

  EXPECT_EQ(Value(body, Idx("pg_index_unused", "sized", "sized_v")), 1);
  EXPECT_EQ(Value(body, Idx("pg_index_unused", "sized", "sized_pkey")), 0) << "a primary key is never unused";
  EXPECT_EQ(Value(body, Idx("pg_index_invalid", "dups", "dups_k")), 1);
  EXPECT_EQ(Value(body, Idx("pg_index_invalid", "sized", "sized_v")), 0);
  EXPECT_FALSE(SampleValue(body, Rel("pg_table_last_vacuum_timestamp_seconds", "sized")).has_value())
      << "never vacuumed";

  // Using the index and vacuuming the table show up on the next scrape.
  pg_->Exec("SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM sized WHERE v = 7");
  pg_->Exec("VACUUM sized");
  ASSERT_TRUE(PollUntil([] {
    return pg_->Query("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'sized_v'") == "1" &&
           pg_->Query("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'sized'") == "1";
  }));
  body = Scrape(*agent);
  EXPECT_EQ(Value(body, Idx("pg_index_scans_total", "sized", "sized_v")), 1);
  EXPECT_EQ(Value(body, Idx("pg_index_tuples_fetched_total", "sized", "sized_v")),
            Number(*pg_, "SELECT idx_tup_fetch FROM pg_stat_user_indexes WHERE indexrelname = 'sized_v'"));
  EXPECT_EQ(Value(body, Idx("pg_index_unused", "sized", "sized_v")), 0);
  EXPECT_EQ(Value(body, Rel("pg_table_vacuums_total", "sized")), 1);
  EXPECT_NEAR(Value(body, Rel("pg_table_last_vacuum_timestamp_seconds", "sized")),
              Number(*pg_, "SELECT extract(epoch FROM last_vacuum) FROM pg_stat_user_tables WHERE relname = 'sized'"),
              1e-3);
  EXPECT_EQ(Value(body, Rel("pg_table_dead_tuples", "sized")), 0);
}

TEST_F(StorageCollectors, RequestedCheckpointIsCounted) {
  int version = std::stoi(pg_->Query("SHOW server_version_num"));
  std::string requested = version >= 170000 ? "SELECT num_requested FROM pg_stat_checkpointer"
                                            : "SELECT checkpoints_req FROM pg_stat_bgwriter";
  auto agent = StartAgent(*pg_);
  std::string before = Scrape(*agent);
  EXPECT_TRUE(CollectorOk(before, "checkpointer")) << agent->Log();
  double count_before = Value(before, "pg_checkpointer_checkpoints_requested_total");
  EXPECT_EQ(count_before, Number(*pg_, requested));

  pg_->Exec("CREATE TABLE checkpointed AS SELECT g FROM generate_series(1, 1000) g");
  pg_->Exec("CHECKPOINT");
  ASSERT_TRUE(PollUntil([&] { return Number(*pg_, requested) > count_before; }));
  std::string after = Scrape(*agent);
  double count_after = Value(after, "pg_checkpointer_checkpoints_requested_total");
  EXPECT_GE(count_after, count_before + 1);
  EXPECT_EQ(count_after, Number(*pg_, requested));
  EXPECT_GT(Value(after, "pg_checkpointer_buffers_written_total"),
            Value(before, "pg_checkpointer_buffers_written_total"));
  EXPECT_TRUE(SampleValue(after, "pg_checkpointer_checkpoints_timed_total").has_value());
  EXPECT_TRUE(CollectorOk(after, "bgwriter"));
  EXPECT_TRUE(SampleValue(after, "pg_bgwriter_buffers_allocated_total").has_value());
}

TEST_F(StorageCollectors, WalGrowsAndDirectorySizeMatches) {
  auto agent = StartAgent(*pg_);
  std::string before = Scrape(*agent);
  for (const char* c : {"wal_stats", "wal_lsn", "wal_directory"})
    EXPECT_TRUE(CollectorOk(before, c)) << c << "\n" << agent->Log();
  double bytes_before = Value(before, "pg_wal_bytes_total");
  double lsn_before = Value(before, "pg_wal_lsn_bytes");

  pg_->Exec("CREATE TABLE walled AS SELECT g, repeat('w', 200) AS payload FROM generate_series(1, 40000) g");
  const std::string wal_bytes = "SELECT wal_bytes FROM pg_stat_wal";
  const std::string lsn = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn";
  const std::string waldir = "SELECT sum(size) FROM pg_ls_waldir()";
  ASSERT_TRUE(PollUntil([&] { return Number(*pg_, wal_bytes) > bytes_before + 4e6; }));

  // Other processes may write a little WAL meanwhile: the scrape must fall between two direct reads.
  double bytes_low = Number(*pg_, wal_bytes), lsn_low = Number(*pg_, lsn), dir_low = Number(*pg_, waldir);
  std::string after = Scrape(*agent);
  double bytes_high = Number(*pg_, wal_bytes), lsn_high = Number(*pg_, lsn), dir_high = Number(*pg_, waldir);

  double bytes = Value(after, "pg_wal_bytes_total");
  EXPECT_GT(bytes, bytes_before + 4e6);
  EXPECT_GE(bytes, bytes_low);
  EXPECT_LE(bytes, bytes_high);
  double position = Value(after, "pg_wal_lsn_bytes");
  EXPECT_GT(position, lsn_before + 4e6);
  EXPECT_GE(position, lsn_low);
  EXPECT_LE(position, lsn_high);
  double dir = Value(after, "pg_wal_directory_size_bytes");
  EXPECT_GT(dir, 0);
  EXPECT_TRUE(dir == dir_low || dir == dir_high) << dir << " vs " << dir_low << "/" << dir_high;
  EXPECT_GE(Value(after, "pg_wal_directory_files"), 1);
  EXPECT_GT(Value(after, "pg_wal_records_total"), Value(before, "pg_wal_records_total"));
}

TEST_F(StorageCollectors, BuffercacheUsedPlusUnusedIsSharedBuffers) {
  pg_->Exec("CREATE EXTENSION IF NOT EXISTS pg_buffercache");
  auto agent = StartAgent(*pg_);
  std::string body = Scrape(*agent);
  EXPECT_TRUE(CollectorOk(body, "buffercache")) << agent->Log();
  double used = Value(body, "pg_buffercache_buffers_used");
  double unused = Value(body, "pg_buffercache_buffers_unused");
  EXPECT_GT(used, 0);
  EXPECT_EQ(used + unused, Number(*pg_, "SELECT setting::float8 FROM pg_settings WHERE name = 'shared_buffers'"));
  EXPECT_LE(Value(body, "pg_buffercache_buffers_dirty"), used);
  double usage = Value(body, "pg_buffercache_usage_count_average");
  EXPECT_GE(usage, 0);
  EXPECT_LE(usage, 5);
}

TEST_F(StorageCollectors, VacuumInProgressIsReportedWithItsPhase) {
  std::string body;
  {
    SlowVacuum vacuum(*pg_, "slowvac");
    ASSERT_TRUE(vacuum.WaitScanning()) << "the vacuum never showed up in pg_stat_progress_vacuum";
    auto agent = StartAgent(*pg_);
    body = Scrape(*agent);
  }

  EXPECT_EQ(SampleValue(body, "pg_vacuum_running{datname=\"postgres\",kind=\"manual\",phase=\"scanning heap\"}"), 1.0)
      << body;
  const std::string labels = "kind=\"manual\",phase=\"scanning heap\"";
  EXPECT_EQ(Value(body, Rel("pg_vacuum_progress_heap_blocks", "slowvac", labels)),
            Number(*pg_, "SELECT pg_relation_size('slowvac') / current_setting('block_size')::int"));
  double scanned = Value(body, Rel("pg_vacuum_progress_heap_blocks_scanned", "slowvac", labels));
  EXPECT_GE(scanned, 0);
  EXPECT_LT(scanned, Value(body, Rel("pg_vacuum_progress_heap_blocks", "slowvac", labels)));
  EXPECT_GE(Value(body, Rel("pg_vacuum_progress_running_seconds", "slowvac", labels)), 0);
  EXPECT_EQ(Value(body, Rel("pg_vacuum_progress_index_vacuum_cycles", "slowvac", labels)), 0);
  EXPECT_EQ(pg_->Query("SELECT count(*) FROM pg_stat_progress_vacuum"), "0");
}

TEST_F(StorageCollectors, IoStatisticsStartWithPostgres16) {
  int version = std::stoi(pg_->Query("SHOW server_version_num"));
  auto agent = StartAgent(*pg_);
  std::string body = Scrape(*agent);
  if (version < 160000) {
    // pg_stat_io does not exist: the collector is skipped, not failed.
    EXPECT_EQ(CountSamples(body, "pg_io_reads_total"), 0);
    EXPECT_FALSE(SampleValue(body, "pgpulse_collector_success{collector=\"io\",target=\"main\"}").has_value());
  } else {
    EXPECT_TRUE(CollectorOk(body, "io")) << agent->Log();
    EXPECT_GT(CountSamples(body, "pg_io_hits_total"), 0);
  }
}

// table_stats and index_stats limit themselves in SQL (LIMIT $1 = max_rows): the largest
// tables by catalog size are kept, invalid indexes always come first, and the rows left out
// are still counted as dropped series.
TEST(StorageTopN, LargestTablesAreKeptAndTheRestCounted) {
  auto pg = PostgresServer::Start();
  for (int i = 1; i <= 5; ++i)
    pg->Exec("CREATE TABLE t" + std::to_string(i) +
             " AS SELECT g, repeat('x', 200) AS pad "
             "FROM generate_series(1, " +
             std::to_string(i * 2000) + ") g");
  pg->Exec("CREATE INDEX t5_g ON t5 (g); CREATE INDEX t4_g ON t4 (g)");
  pg->Exec("CREATE TABLE dups (k int); INSERT INTO dups VALUES (1), (1)");
  EXPECT_THROW(pg->Exec("CREATE UNIQUE INDEX CONCURRENTLY dups_k ON dups (k)"), pqxx::sql_error);
  pg->Exec("VACUUM ANALYZE");
  std::string uri = "postgresql://postgres@127.0.0.1:" + std::to_string(pg->port()) + "/postgres";
  std::string cfg = WriteTempFile("topn-" + std::to_string(pg->port()) + ".yml",
                                  "targets:\n  - name: main\n    dsn: \"" + uri +
                                      "\"\n"
                                      "collectors:\n  overrides:\n    table_stats: {max_rows: 2}\n"
                                      "    index_stats: {max_rows: 2}\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = Scrape(*agent);
  ASSERT_TRUE(CollectorOk(body, "table_stats")) << agent->Log();
  ASSERT_TRUE(CollectorOk(body, "index_stats")) << agent->Log();

  EXPECT_EQ(CountSamples(body, "pg_table_seq_scans_total"), 2) << body;
  EXPECT_TRUE(SampleValue(body, Rel("pg_table_live_tuples", "t5")).has_value()) << body;
  EXPECT_TRUE(SampleValue(body, Rel("pg_table_live_tuples", "t4")).has_value()) << body;
  EXPECT_FALSE(SampleValue(body, Rel("pg_table_live_tuples", "t3")).has_value()) << body;
  EXPECT_EQ(Value(body, Rel("pg_table_live_tuples", "t5")), 10000);
  EXPECT_EQ(Value(body, Rel("pg_table_heap_blocks_hit_total", "t5")),
            Number(*pg, "SELECT heap_blks_hit FROM pg_statio_user_tables WHERE relname = 't5'"));

  // Four user tables (t1..t3, dups) were left out: each counts once per metric column.
  double tables = Number(*pg, "SELECT count(*) FROM pg_stat_user_tables");
  double dropped =
      Value(body, "pgpulse_collector_series_dropped_total{collector=\"table_stats\",reason=\"limit\",target=\"main\"}");
  ASSERT_EQ(tables, 6);
  EXPECT_EQ(std::fmod(dropped, tables - 2), 0) << dropped;
  EXPECT_GE(dropped / (tables - 2), 24) << dropped;

  // The invalid index is tiny but comes first; then the largest valid one, t5_g.
  EXPECT_EQ(CountSamples(body, "pg_index_invalid"), 2) << body;
  EXPECT_EQ(Value(body, Idx("pg_index_invalid", "dups", "dups_k")), 1);
  EXPECT_EQ(Value(body, Idx("pg_index_invalid", "t5", "t5_g")), 0);
  EXPECT_EQ(Value(body, Idx("pg_index_blocks_hit_total", "t5", "t5_g")),
            Number(*pg, "SELECT idx_blks_hit FROM pg_statio_user_indexes WHERE indexrelname = 't5_g'"));
  EXPECT_GT(
      Value(body, "pgpulse_collector_series_dropped_total{collector=\"index_stats\",reason=\"limit\",target=\"main\"}"),
      0);
}

// Restarting empties shared buffers, so the first read of a table misses and the second hits.
TEST(StorageCache, ColdReadsThenHitsAreCounted) {
  auto pg = PostgresServer::Start();
  pg->Exec(
      "CREATE TABLE cached WITH (autovacuum_enabled = off) AS "
      "SELECT g, repeat('c', 100) AS payload FROM generate_series(1, 20000) g");
  pg->Exec("VACUUM ANALYZE cached");
  pg->Restart();
  double pages = Number(*pg, "SELECT relpages FROM pg_class WHERE relname = 'cached'");
  ASSERT_GT(pages, 100);
  const std::string reads = "SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = 'cached'";
  const std::string hits = "SELECT heap_blks_hit FROM pg_statio_user_tables WHERE relname = 'cached'";

  auto agent = StartAgent(*pg);
  std::string body = Scrape(*agent);
  EXPECT_TRUE(CollectorOk(body, "table_stats")) << agent->Log();
  double read0 = Value(body, Rel("pg_table_heap_blocks_read_total", "cached"));
  double hit0 = Value(body, Rel("pg_table_heap_blocks_hit_total", "cached"));
  EXPECT_EQ(read0, Number(*pg, reads));
  EXPECT_EQ(hit0, Number(*pg, hits));

  pg->Exec("SELECT count(*) FROM cached");
  ASSERT_TRUE(PollUntil([&] { return Number(*pg, reads) >= read0 + pages; }));
  body = Scrape(*agent);
  double read1 = Value(body, Rel("pg_table_heap_blocks_read_total", "cached"));
  double hit1 = Value(body, Rel("pg_table_heap_blocks_hit_total", "cached"));
  EXPECT_GE(read1, read0 + pages);
  EXPECT_EQ(read1, Number(*pg, reads));
  EXPECT_EQ(hit1, Number(*pg, hits));

  pg->Exec("SELECT count(*) FROM cached");
  ASSERT_TRUE(PollUntil([&] { return Number(*pg, hits) >= hit1 + pages; }));
  body = Scrape(*agent);
  double hit2 = Value(body, Rel("pg_table_heap_blocks_hit_total", "cached"));
  EXPECT_GE(hit2, hit1 + pages);
  EXPECT_EQ(hit2, Number(*pg, hits));
  EXPECT_EQ(Value(body, Rel("pg_table_heap_blocks_read_total", "cached")), read1) << "the second read is all hits";
}

// Archiving needs archive_mode at server start; a failing command first, then a working one.
TEST(StorageArchiver, FailuresThenSuccessesAreCounted) {
  auto pg = PostgresServer::Start({"archive_mode = on", "archive_command = '/bin/false'"});
  auto agent = StartAgent(*pg);
  pg->Exec("CREATE TABLE archived AS SELECT g FROM generate_series(1, 1000) g");
  pg->Exec("SELECT pg_switch_wal()");
  ASSERT_TRUE(PollUntil([&] { return Number(*pg, "SELECT failed_count FROM pg_stat_archiver") >= 1; }, 30));

  // The archiver retries a failed file twice more a second apart: read the server before and after.
  const std::string last_failed = "SELECT extract(epoch FROM last_failed_time) FROM pg_stat_archiver";
  double failed_low = Number(*pg, last_failed);
  std::string body = Scrape(*agent);
  double failed_high = Number(*pg, last_failed);
  EXPECT_TRUE(CollectorOk(body, "archiver")) << agent->Log();
  EXPECT_GE(Value(body, "pg_archiver_failed_total"), 1);
  EXPECT_EQ(Value(body, "pg_archiver_archived_total"), 0);
  EXPECT_EQ(Value(body, "pg_archiver_last_attempt_failed"), 1);
  EXPECT_EQ(Value(body, "pg_archiver_enabled"), 1);
  EXPECT_GE(Value(body, "pg_archiver_pending_wal_files"), 1);
  double failed_at = Value(body, "pg_archiver_last_failed_timestamp_seconds");
  EXPECT_GE(failed_at, failed_low - 1e-3);
  EXPECT_LE(failed_at, failed_high + 1e-3);
  EXPECT_FALSE(SampleValue(body, "pg_archiver_last_archived_age_seconds").has_value()) << "nothing archived yet";

  pg->Exec("ALTER SYSTEM SET archive_command = '/bin/true'");
  pg->Exec("SELECT pg_reload_conf()");
  ASSERT_TRUE(PollUntil(
      [&] {
        return Number(*pg, "SELECT archived_count FROM pg_stat_archiver") >= 1 &&
               Number(*pg, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'") == 0;
      },
      30));
  body = Scrape(*agent);
  EXPECT_GE(Value(body, "pg_archiver_archived_total"), 1);
  EXPECT_EQ(Value(body, "pg_archiver_last_attempt_failed"), 0);
  EXPECT_EQ(Value(body, "pg_archiver_pending_wal_files"), 0);
  double age = Value(body, "pg_archiver_last_archived_age_seconds");
  EXPECT_GE(age, 0);
  EXPECT_LT(age, 60);
}

}  // namespace
}  // namespace pgpulse::testing
