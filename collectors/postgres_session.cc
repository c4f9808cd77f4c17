#include "collectors/postgres_session.h"

#include <poll.h>

#include <libpq-fe.h>
#include <pqxx/except>
#include <pqxx/result>

#include <cerrno>
#include <sstream>

namespace pgpulse::collectors {

namespace {

using Clock = std::chrono::steady_clock;

// Whether a connection with `conninfo` can be made before `deadline`: libpq's own connect_timeout
// counts whole seconds, 2 at least, so a connect made with little time left could overrun the
// scrape. Driven with PQconnectPoll and poll(2), this attempt ends by the deadline; on success
// it is closed again, and the caller's real connect meets a server that just answered.
bool ConnectsBefore(const std::string& conninfo, Clock::time_point deadline, std::string& error) {
  PGconn* conn = PQconnectStart(conninfo.c_str());
  if (!conn) {
    error = "out of memory";
    return false;
  }
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK && status != PGRES_POLLING_FAILED && PQstatus(conn) != CONNECTION_BAD) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      error = "connecting did not finish before the scrape deadline";
      PQfinish(conn);
      return false;
    }
    pollfd p{PQsocket(conn), static_cast<short>(status == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
    if (p.fd < 0) break;
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
    if (p.revents == 0) continue;
    status = PQconnectPoll(conn);
  }
  const bool ok = status == PGRES_POLLING_OK && PQstatus(conn) == CONNECTION_OK;
  if (!ok && error.empty()) error = PQerrorMessage(conn);
  PQfinish(conn);
  return ok;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) items.push_back(item);
  return items;
}

}  // namespace

std::unique_ptr<PostgresSession> PostgresSession::Open(const std::string& conninfo, const SessionOptions& options) {
  if (options.connect_by && *options.connect_by - Clock::now() < std::chrono::seconds(2)) {
    std::string slow;
    if (!ConnectsBefore(conninfo, *options.connect_by, slow)) throw std::runtime_error(slow);
  }
  auto conn = std::make_unique<pqxx::connection>(conninfo);
  // Label values must be UTF-8: the server converts names and texts from the database's
  // encoding. Not from SQL_ASCII (where it would refuse every byte >= 0x80 and fail the
  // query): those come as they are, and collectors::AppendLabel replaces what is invalid.
  if (conn->get_client_encoding() != "SQL_ASCII") conn->set_client_encoding("UTF8");
  return std::unique_ptr<PostgresSession>(new PostgresSession(std::move(conn), options.prepared_statements));
}

PostgresSession::~PostgresSession() {
  try {
    if (conn_) conn_->disconnect();
  } catch (...) {
  }
}

pqxx::result PostgresSession::Catalog(const std::string& sql, Millis timeout) {
  if (!conn_) throw SessionLost("connection lost: not connected");
  try {
    return *RunReadOnly(*conn_, sql, timeout);
  } catch (const pqxx::broken_connection& e) {
    conn_.reset();
    throw SessionLost(std::string("connection lost: ") + e.what());
  } catch (const std::exception& e) {
    if (conn_->is_open()) throw;
    conn_.reset();
    throw SessionLost(std::string("connection lost: ") + e.what());
  }
}

ServerFacts PostgresSession::ReadFacts(Millis timeout, std::string& database) {
  pqxx::result r = Catalog(
      "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
      "pg_is_in_recovery(), current_database(), "
      "coalesce((SELECT string_agg(extname || '=' || extversion, ',') FROM pg_extension), ''), current_user, "
      // pg_has_role(..., 'USAGE'): has the role's privileges (inherited), true for superusers.
      "coalesce((SELECT string_agg(rolname, ',') FROM pg_roles "
      "          WHERE rolname LIKE 'pg\\_%' AND pg_has_role(current_user, oid, 'USAGE')), '')",
      timeout);
  ServerFacts facts;
  facts.kind = TargetKind::Postgres;
  facts.version_num = r[0][0].as<int>();
  facts.version = r[0][1].c_str();
  facts.in_recovery = r[0][2].as<bool>();
  database = r[0][3].c_str();
  for (const std::string& e : SplitList(r[0][4].c_str())) {
    const size_t eq = e.find('=');
    facts.extensions.insert(e.substr(0, eq));
    if (eq != std::string::npos) facts.extension_versions[e.substr(0, eq)] = e.substr(eq + 1);
  }
  facts.user = r[0][5].c_str();
  for (const std::string& p : SplitList(r[0][6].c_str())) facts.privileges.insert(p);
  return facts;
}

std::vector<std::string> PostgresSession::ListDatabases(Millis timeout) {
  return ListNames("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
                   timeout);
}

std::vector<std::string> PostgresSession::ListNames(const std::string& sql, Millis timeout) {
  pqxx::result r = Catalog(sql, timeout);
  if (r.columns() < 1) throw std::runtime_error("the query returned no column");
  std::vector<std::string> names;
  for (const auto& row : r) {
    if (!row[0].is_null()) names.emplace_back(row[0].c_str());
  }
  return names;
}

std::set<std::string> PostgresSession::ReadExtensions(Millis timeout) {
  std::set<std::string> names;
  for (const auto& row : Catalog("SELECT extname FROM pg_extension", timeout)) names.insert(row[0].c_str());
  return names;
}

ServerLocation PostgresSession::ReadLocation(Millis timeout) {
  // inet_server_addr() is NULL over a Unix socket. data_directory needs
  // pg_read_all_settings (in pg_monitor).
  pqxx::result r = Catalog(
      "SELECT coalesce(inet_server_addr() <<= '127.0.0.0/8'::inet OR inet_server_addr() = '::1'::inet, true), "
      "coalesce(host(inet_server_addr()), 'a Unix socket'), current_setting('data_directory'), "
      "current_setting('port'), extract(epoch FROM pg_postmaster_start_time())::bigint, "
      // The log's settings and files (logs source). pg_current_logfile() is superuser-only unless
      // GRANTed, and 'jsonlog' is an error before 15 (it is only asked for when log_destination has it).
      "current_setting('logging_collector') = 'on', current_setting('log_destination'), "
      "has_function_privilege('pg_current_logfile(text)', 'EXECUTE'), "
      "CASE WHEN has_function_privilege('pg_current_logfile(text)', 'EXECUTE') "
      "     THEN coalesce(pg_current_logfile('csvlog'), '') ELSE '' END, "
      "CASE WHEN has_function_privilege('pg_current_logfile(text)', 'EXECUTE') "
      "      AND current_setting('log_destination') LIKE '%jsonlog%' "
      "     THEN coalesce(pg_current_logfile('jsonlog'), '') ELSE '' END",
      timeout);
  ServerLocation where;
  where.local = r[0][0].as<bool>();
  where.address = r[0][1].c_str();
  where.data_directory = r[0][2].c_str();
  where.port = r[0][3].c_str();
  where.started = r[0][4].as<long long>();
  where.logging_collector = r[0][5].as<bool>();
  where.log_destination = r[0][6].c_str();
  where.may_ask_logfile = r[0][7].as<bool>();
  where.current_csvlog = r[0][8].c_str();
  where.current_jsonlog = r[0][9].c_str();
  return where;
}

CollectorRun PostgresSession::Run(const PlannedCollector& planned, Millis timeout, const Labels& extra_labels,
                                  const FilesystemAccess& filesystem) {
  if (!conn_) {
    CollectorRun run;
    run.connection_lost = true;
    run.error = "connection lost: not connected";
    return run;
  }
  RowReading reading;
  reading.prepare = prepare_;
  // A query whose last result here filled a batch, or that has not run here yet, is read in
  // batches; one known to be small runs whole, as a prepared statement planned once. Not yet run
  // counts as large so that the first scrape after a start, with every cache empty, does not hold
  // 30,000 tables' rows whole either.
  const std::string key = PreparedName(planned.variant->sql);
  const auto last = last_rows_.find(key);
  if (last == last_rows_.end() || last->second >= kBatchRows) reading.batch_rows = kBatchRows;
  if (last != last_rows_.end()) reading.expected_rows = last->second;
  CollectorRun run = RunCollector(*conn_, planned, timeout, extra_labels, filesystem, reading);
  // A query that cannot be a cursor's runs whole from now on.
  if (run.success) last_rows_[key] = run.declarable ? run.rows : 0;
  if (run.connection_lost) conn_.reset();
  return run;
}

}  // namespace pgpulse::collectors
