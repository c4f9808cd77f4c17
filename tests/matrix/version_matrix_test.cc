// The version matrix: one PostgreSQL major (PGPULSE_PG_MAJOR, 12 to 18; CTest runs one process per major,
// label `matrix`) with a primary, a streaming standby and a subscription, under a little load. Every collector,
// the opt-in ones included, must be ok or skipped with a reason on both servers, never failed; both scrapes
// must pass `promtool check metrics`; and the values whose source changed shape across majors are checked.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/exporter_differential.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_exporter_process.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

const char* kConfig = R"(collectors:
  enable: [table_bloat_pgstattuple, sequences, statements_query]
)";

int Major() {
  const char* major = std::getenv("PGPULSE_PG_MAJOR");
  return major ? std::atoi(major) : 0;
}

// The first sample of `name` whose label block contains `labels` ("" for any), or nullopt.
std::optional<double> FindSample(const std::string& body, const std::string& name, const std::string& labels = "") {
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    if (line.size() <= name.size() || (line[name.size()] != ' ' && line[name.size()] != '{')) continue;
    size_t space = line.rfind(' ');
    if (line.find(labels) >= space) continue;
    return std::stod(line.substr(space + 1));
  }
  return std::nullopt;
}

// Whether this major's server is installed; not being so fails under CI=true, which needs the whole matrix.
bool Installed(int major) {
  CommandResult installed =
      RunCommand({"bash", std::string(PGPULSE_SOURCE_DIR) + "/tests/pg-majors.sh", "bindir", std::to_string(major)});
  if (installed.exit_status == 0) return true;
  const char* ci = std::getenv("CI");
  EXPECT_FALSE(ci && std::string(ci) == "true")
      << "PostgreSQL " << major << " is not installed, and CI=true needs the whole matrix: "
      << "bash tests/pg-majors.sh install";
  return false;
}

std::string NotInstalled(int major) {
  return "PostgreSQL " + std::to_string(major) +
         " is not installed: run bash tests/pg-majors.sh install (needs npm: apt-get install npm)";
}

struct CheckRow {
  std::string collector, status, series, detail;
};

// `pgpulse check --connect` against dsn: the table's rows.
std::vector<CheckRow> CheckConnect(const std::string& config, const std::string& dsn, std::string* output,
                                   const std::vector<std::string>& flags = {}) {
  std::vector<std::string> args{"--config.file=" + config, "check", "--connect"};
  args.insert(args.end(), flags.begin(), flags.end());
  CommandResult r = AgentProcess::Run(args, {{"DATA_SOURCE_NAME", dsn}});
  *output = r.output;
  std::vector<CheckRow> rows;
  std::istringstream in(r.output);
  bool table = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("COLLECTOR", 0) == 0) {
      table = true;
      continue;
    }
    if (!table || line.empty() || line.rfind("ts=", 0) == 0) continue;
    std::istringstream fields(line);
    CheckRow row;
    std::string duration;
    fields >> row.collector >> row.status;
    if (row.status.rfind("(", 0) == 0) {  // a database-scoped collector: "name (datname)"
      row.collector += " " + row.status;
      fields >> row.status;
    }
    fields >> duration >> row.series;
    std::getline(fields, row.detail);
    rows.push_back(row);
  }
  return rows;
}

std::vector<CheckRow> ExpectEveryCollectorOkOrSkipped(const std::string& server, const std::string& config,
                                                      const std::string& dsn,
                                                      const std::vector<std::string>& flags = {},
                                                      size_t at_least = 40) {
  std::string output;
  std::vector<CheckRow> rows = CheckConnect(config, dsn, &output, flags);
  EXPECT_GT(rows.size(), at_least) << server << ": no collector table in:\n" << output;
  for (const CheckRow& row : rows) {
    const bool has_reason = row.detail.find_first_not_of(' ') != std::string::npos;
    EXPECT_TRUE(row.status == "ok" || (row.status == "skipped" && has_reason))
        << server << ": collector " << row.collector << " " << row.status << ":" << row.detail;
  }
  return rows;
}

const CheckRow* FindRow(const std::vector<CheckRow>& rows, const std::string& collector) {
  for (const CheckRow& row : rows) {
    if (row.collector == collector) return &row;
  }
  return nullptr;
}

void ExpectPromtoolClean(const std::string& name, const std::string& body) {
  std::string path = WriteTempFile(name, body);
  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  CommandResult lint = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(lint.exit_status, 0) << name << ": " << lint.output;
  EXPECT_EQ(lint.output, "") << name;
}

// The differential test against Debian's postgres_exporter 0.11.1 (tests/harness/exporter_differential.h) on this
// major: the same families with the same labels, and 0.11.1's values between two pgpulse scrapes around it.
void ExpectTheSameAsPostgresExporter(const std::string& server, const PostgresServer& pg) {
  SCOPED_TRACE(server + " against postgres_exporter 0.11.1");
  if (!PostgresExporterProcess::Installed()) {
    std::cout << "skipped: " << PostgresExporterProcess::kBinary
              << " is not installed (Debian package prometheus-postgres-exporter)\n";
    return;
  }
  auto pe = PostgresExporterProcess::Start(pg.uri() + "?sslmode=disable");
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, {{"DATA_SOURCE_NAME", pg.dsn()}});
  ScrapeUntil(*agent,
              [](const std::string& b) { return b.find("pg_stat_user_tables_n_live_tup") != std::string::npos; });
  const Families before = ParseFamilies(Scrape(*agent));
  const std::string their_text = HttpGet(pe->url("/metrics")).body;
  const Families after = ParseFamilies(Scrape(*agent));
  const Families theirs = ParseFamilies(their_text);
  EXPECT_EQ(SampleValue(their_text, "pg_up"), 1.0) << their_text.substr(0, 2000);
  EXPECT_GT(CompareFamilies(theirs, after), 150);
  EXPECT_GT(CompareValuesBetween(theirs, before, after), 200);
}

TEST(VersionMatrix, EveryCollectorRunsAndVersionShapedValuesAreRight) {
  const int major = Major();
  ASSERT_GE(major, 12) << "set PGPULSE_PG_MAJOR to a major from 12 to 18";
  ASSERT_LE(major, 18) << "set PGPULSE_PG_MAJOR to a major from 12 to 18";
  if (!Installed(major)) GTEST_SKIP() << NotInstalled(major);

  auto primary = PostgresServer::Start({"wal_level = logical", "track_io_timing = on", "max_wal_senders = 10"});
  ASSERT_EQ(primary->Query("SHOW server_version_num").substr(0, 2), std::to_string(major));
  primary->Exec("CREATE EXTENSION pgstattuple");
  primary->Exec("CREATE EXTENSION pg_buffercache");
  primary->Exec("CREATE SEQUENCE matrix_seq");
  primary->Exec("CREATE TABLE matrix_load (id int PRIMARY KEY, n bigint NOT NULL)");
  // Over the 1 MiB floor of table_bloat_pgstattuple once analyzed.
  primary->Exec("INSERT INTO matrix_load SELECT g, 0 FROM generate_series(1, 40000) AS g");
  primary->Exec("ANALYZE matrix_load");
  primary->Exec("CREATE PUBLICATION matrix_pub FOR TABLE matrix_load");
  // A subscription to the same server: its slot is made beforehand, as CREATE SUBSCRIPTION would wait on itself.
  primary->Exec("SELECT pg_create_logical_replication_slot('matrix_sub', 'pgoutput')");
  primary->Exec("CREATE DATABASE matrix_subscriber");
  const std::string subscriber_dsn = "host=127.0.0.1 port=" + std::to_string(primary->port()) +
                                     " user=postgres dbname=matrix_subscriber";
  {
    pqxx::connection c(subscriber_dsn);
    pqxx::nontransaction tx(c);
    tx.exec("CREATE TABLE matrix_load (id int PRIMARY KEY, n bigint NOT NULL)");
    tx.exec("CREATE SUBSCRIPTION matrix_sub CONNECTION 'host=127.0.0.1 port=" + std::to_string(primary->port()) +
            " user=postgres dbname=postgres' PUBLICATION matrix_pub"
            " WITH (create_slot = false, slot_name = 'matrix_sub')");
  }
  auto standby = PostgresServer::StartStandbyOf(*primary, {"cluster_name = 'standby1'"});
  ASSERT_TRUE(PollUntil(
      [&] {
        return primary->Query(
                   "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' "
                   "AND state = 'streaming'") == "1";
      },
      30))
      << "the standby never streamed";

  // A little load while the collectors run: bounded updates and reads, paced, stopped at the end.
  std::atomic<bool> stop{false};
  std::thread load([&] {
    try {
      pqxx::connection c(primary->dsn());
      for (int i = 0; i < 3000 && !stop; ++i) {
        pqxx::nontransaction tx(c);
        tx.exec("UPDATE matrix_load SET n = n + 1 WHERE id = " + std::to_string(1 + i % 5000));
        tx.exec("SELECT sum(n) FROM matrix_load WHERE id < " + std::to_string(100 + i % 1000));
        tx.exec("SELECT nextval('matrix_seq')");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "load: " << e.what();
    }
  });
  struct StopLoad {
    std::atomic<bool>& stop;
    std::thread& load;
    ~StopLoad() {
      stop = true;
      load.join();
    }
  } stop_load{stop, load};

  const std::string config = WriteTempFile("matrix.yml", kConfig);
  ExpectEveryCollectorOkOrSkipped("primary", config, primary->dsn());
  ExpectEveryCollectorOkOrSkipped("standby", config, standby->dsn());
  // Collectors with run_in ran above only where their query found something (no vacuum was running; the
  // subscription lives in matrix_subscriber): their SQL for this major runs here, where it has rows or none.
  const std::string version_num = primary->Query("SHOW server_version_num");
  for (const auto& [name, database, rows] : {std::tuple{"vacuum_progress", "postgres", false},
                                             std::tuple{"subscription_tables", "matrix_subscriber", true}}) {
    CommandResult sql = AgentProcess::Run({"sql", name, "--server-version", version_num});
    ASSERT_EQ(sql.exit_status, 0) << name << ": " << sql.output;
    pqxx::connection c("host=127.0.0.1 port=" + std::to_string(primary->port()) + " user=postgres dbname=" + database);
    pqxx::nontransaction tx(c);
    try {
      EXPECT_EQ(tx.exec(sql.output).size() > 0, rows) << name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << name << " on " << major << ": " << e.what();
    }
  }
  // The postgres_exporter profile's definitions, the opt-in ones pgpulse serves too, on this major.
  const std::string no_config = WriteTempFile("matrix-pe.yml", "");
  const std::vector<std::string> profile{"--metrics.profile=postgres_exporter",
                                         "--collector.postmaster",
                                         "--collector.database_wraparound",
                                         "--collector.long_running_transactions",
                                         "--collector.stat_activity_autovacuum",
                                         "--collector.statio_user_indexes",
                                         "--collector.xlog_location",
                                         "--collector.buffercache_summary",
                                         "--collector.stat_checkpointer",
                                         "--collector.stat_wal_receiver",
                                         "--collector.process_idle",
                                         "--collector.stat_statements",
                                         "--collector.stat_statements.include_query"};
  for (const auto& [server, dsn] : {std::pair{"primary (postgres_exporter profile)", primary->dsn()},
                                    std::pair{"standby (postgres_exporter profile)", standby->dsn()}}) {
    std::vector<CheckRow> rows = ExpectEveryCollectorOkOrSkipped(server, no_config, dsn, profile, 15);
    for (const char* name :
         {"pe_stat_database", "pe_stat_bgwriter", "pe_settings", "pe_stat_progress_vacuum", "pe_database_wraparound",
          "pe_long_running_transactions", "pe_statio_user_indexes", "pe_stat_wal_receiver", "pe_process_idle",
          "pe_stat_statements", "pe_stat_statements__query"}) {
      const CheckRow* row = FindRow(rows, name);
      ASSERT_NE(row, nullptr) << server << ": " << name;
      EXPECT_EQ(row->status, "ok") << server << ": " << name << ":" << row->detail;
    }
    // Only where their source exists.
    const std::pair<const char*, bool> version_bound[] = {
        {"pe_buffercache_summary", major >= 16}, {"pe_stat_checkpointer", major >= 17}, {"pe_xlog_location", false}};
    for (const auto& [name, served] : version_bound) {
      const CheckRow* row = FindRow(rows, name);
      ASSERT_NE(row, nullptr) << server << ": " << name;
      EXPECT_EQ(row->status, served ? "ok" : "skipped") << server << ": " << name << ":" << row->detail;
    }
  }

  ExpectTheSameAsPostgresExporter("primary", *primary);
  ExpectTheSameAsPostgresExporter("standby", *standby);

  // pg_stat_statements left at an older version than the server's (a major upgrade without ALTER EXTENSION
  // ... UPDATE): the statements collectors read the columns of the installed version, chosen by extversion.
  if (major >= 13) {
    const std::string old_version = major >= 14 ? "1.8" : "1.7";
    primary->Exec("CREATE DATABASE matrix_old_pgss");
    const std::string old_dsn = "host=127.0.0.1 port=" + std::to_string(primary->port()) +
                                " user=postgres dbname=matrix_old_pgss";
    {
      pqxx::connection c(old_dsn);
      pqxx::nontransaction tx(c);
      tx.exec("CREATE EXTENSION pg_stat_statements VERSION '" + old_version + "'");
      EXPECT_EQ(tx.exec1("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")[0].c_str(),
                old_version);
    }
    std::vector<CheckRow> rows = ExpectEveryCollectorOkOrSkipped("old pg_stat_statements", config, old_dsn);
    for (const char* name : {"statements", "statements_query"}) {
      const CheckRow* row = FindRow(rows, name);
      ASSERT_NE(row, nullptr) << name;
      EXPECT_EQ(row->status, "ok") << name << ":" << row->detail;
      EXPECT_NE(row->series, "0") << name;
    }
    const CheckRow* info = FindRow(rows, "statements_info");
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->status, "skipped") << "pg_stat_statements_info arrived with 1.9";
    EXPECT_NE(info->detail.find("extension pg_stat_statements " + old_version), std::string::npos) << info->detail;
  }

  auto primary_agent = AgentProcess::Start({"--config.file=" + config}, {{"DATA_SOURCE_NAME", primary->dsn()}});
  auto standby_agent = AgentProcess::Start({"--config.file=" + config}, {{"DATA_SOURCE_NAME", standby->dsn()}});

  // The subscription's apply worker (12 has no max(pg_lsn): its variant takes the maximum of the offset).
  std::string body;
  EXPECT_TRUE(PollUntil(
      [&] {
        body = Scrape(*primary_agent);
        return FindSample(body, "pg_subscription_apply_worker_running", "subname=\"matrix_sub\"") == 1.0 &&
               FindSample(body, "pg_subscription_received_lsn_bytes", "subname=\"matrix_sub\"").value_or(0) > 0;
      },
      30))
      << "the subscription's apply worker never reported:\n"
      << body;

  // Checkpointer: pg_stat_bgwriter before 17, pg_stat_checkpointer from 17, num_done from 18.
  body = Scrape(*primary_agent);
  std::optional<double> requested = FindSample(body, "pg_checkpointer_checkpoints_requested_total");
  ASSERT_TRUE(requested.has_value()) << body;
  primary->Exec("CHECKPOINT");
  // Counters reach the statistics a little after the checkpoint (through the stats collector before 15).
  EXPECT_TRUE(PollUntil(
      [&] {
        body = Scrape(*primary_agent);
        return FindSample(body, "pg_checkpointer_checkpoints_requested_total").value_or(0) >= *requested + 1;
      },
      30))
      << "CHECKPOINT not counted: " << *requested << " before";
  EXPECT_TRUE(FindSample(body, "pg_checkpointer_buffers_written_total").has_value());
  EXPECT_EQ(FindSample(body, "pg_checkpointer_checkpoints_done_total").has_value(), major >= 18);
  EXPECT_EQ(FindSample(body, "pg_bgwriter_backend_buffers_written_total").has_value(), major < 17);
  EXPECT_TRUE(FindSample(body, "pg_bgwriter_buffers_allocated_total").has_value());

  // pg_stat_io from 16; byte columns and the wal object from 18.
  EXPECT_EQ(CountSamples(body, "pg_io_reads_total") > 0, major >= 16);
  EXPECT_EQ(CountSamples(body, "pg_io_read_bytes_total") > 0, major >= 16);
  EXPECT_EQ(FindSample(body, "pg_io_writes_total", "object=\"wal\"").has_value(), major >= 18);

  // pg_stat_wal from 14; its write and sync counters moved to pg_stat_io in 18.
  EXPECT_EQ(FindSample(body, "pg_wal_records_total").value_or(0) > 0, major >= 14);
  EXPECT_EQ(FindSample(body, "pg_wal_writes_total").has_value(), major >= 14 && major < 18);

  // pg_stat_statements: planning and WAL columns from 13 (extension 1.8), JIT from 15 (1.10), _info from 14 (1.9).
  EXPECT_GT(CountSamples(body, "pg_stat_statements_calls_total"), 0);
  EXPECT_GT(CountSamples(body, "pg_stat_statements_query_info"), 0);
  EXPECT_EQ(CountSamples(body, "pg_stat_statements_plans_total") > 0, major >= 13);
  EXPECT_EQ(CountSamples(body, "pg_stat_statements_wal_bytes_total") > 0, major >= 13);
  EXPECT_EQ(CountSamples(body, "pg_stat_statements_jit_time_seconds_total") > 0, major >= 15);
  EXPECT_EQ(FindSample(body, "pg_stat_statements_deallocations_total").has_value(), major >= 14);
  // The opt-in collectors produced rows: pgstattuple's exact bloat, sequences.
  EXPECT_GT(CountSamples(body, "pg_table_bloat_measured_size_bytes"), 0);
  EXPECT_TRUE(FindSample(body, "pg_sequence_used_ratio", "matrix_seq").has_value());

  // Replication lag on a paused standby, seen from both sides.
  standby->Exec("SELECT pg_wal_replay_pause()");
  primary->Exec("INSERT INTO matrix_load SELECT g, 0 FROM generate_series(40001, 41000) AS g");
  std::string standby_body;
  EXPECT_TRUE(PollUntil(
      [&] {
        body = Scrape(*primary_agent);
        standby_body = Scrape(*standby_agent);
        return FindSample(body, "pg_replication_standby_replay_lag_bytes", "application_name=\"standby1\"")
                       .value_or(0) > 0 &&
               FindSample(standby_body, "pg_replication_replica_replay_lag_bytes").value_or(0) > 0 &&
               FindSample(standby_body, "pg_replication_replica_replay_pause_requested") == 1.0;
      },
      30))
      << "no replay lag on the paused standby:\n"
      << standby_body;
  if (major >= 14) {
    EXPECT_TRUE(PollUntil(
        [&] { return FindSample(Scrape(*standby_agent), "pg_replication_replica_replay_paused") == 1.0; }, 30))
        << "14+ tells a finished pause (pg_get_wal_replay_pause_state)";
  }
  EXPECT_EQ(FindSample(standby_body, "pg_replication_is_replica"), 1.0);
  EXPECT_EQ(FindSample(standby_body, "pg_replication_wal_receiver_connected"), 1.0);
  standby->Exec("SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(PollUntil(
      [&] { return FindSample(Scrape(*standby_agent), "pg_replication_replica_replay_lag_bytes") == 0.0; }, 30))
      << "the standby never caught up after the pause";

  ExpectPromtoolClean("primary.prom", Scrape(*primary_agent));
  ExpectPromtoolClean("standby.prom", Scrape(*standby_agent));
}

// Errors by kind from this major's log: csvlog before 15 (jsonlog arrived in 15), jsonlog from 15.
TEST(VersionMatrix, LogErrorsAreCountedInThisMajorsLogFormat) {
  const int major = Major();
  ASSERT_GE(major, 12) << "set PGPULSE_PG_MAJOR to a major from 12 to 18";
  if (!Installed(major)) GTEST_SKIP() << NotInstalled(major);
  const std::string format = major >= 15 ? "jsonlog" : "csvlog";
  auto pg =
      PostgresServer::Start({"logging_collector = on", "log_destination = '" + format + "'", "lc_messages = 'C'"});
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg->dsn()}});
  std::string body = ScrapeUntilValue(*agent, "pg_log_visible{format=\"" + format + "\",reason=\"\"}", 1);
  ASSERT_EQ(FindSample(body, "pg_log_visible", "format=\"" + format + "\""), 1.0) << body;

  EXPECT_THROW(pg->Exec("SET statement_timeout = '50ms'; SELECT pg_sleep(5)"), pqxx::sql_error);
  EXPECT_THROW(pqxx::connection("host=127.0.0.1 port=" + std::to_string(pg->port()) +
                                " dbname=postgres user=nosuchrole sslmode=disable gssencmode=disable"),
               pqxx::broken_connection);
  EXPECT_TRUE(PollUntil(
      [&] {
        body = Scrape(*agent);
        return FindSample(body, "pg_log_statement_timeouts_total") == 1.0 &&
               FindSample(body, "pg_log_authentication_failures_total") == 1.0;
      },
      20))
      << body;
  EXPECT_EQ(FindSample(body, "pg_log_messages_total", "severity=\"FATAL\",sqlstate_class=\"28\""), 1.0) << body;
  EXPECT_EQ(FindSample(body, "pg_log_malformed_records_total"), 0.0) << body;
}

}  // namespace
}  // namespace pgpulse::testing
