#include "collectors/runner.h"

#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>

#include <algorithm>
#include <chrono>
#include <limits>

namespace pgpulse::collectors {

namespace {

TableView ViewOf(const pqxx::result& r) {
  TableView t;
  const auto ncols = static_cast<size_t>(r.columns());
  t.columns.reserve(ncols);
  for (pqxx::row::size_type c = 0; c < r.columns(); ++c) t.columns.emplace_back(r.column_name(c));
  t.rows = r.size();
  t.cells.resize(t.rows * ncols);
  for (size_t i = 0; i < t.rows; ++i) {
    const pqxx::row row = r[static_cast<pqxx::result::size_type>(i)];
    for (size_t c = 0; c < ncols; ++c) {
      const pqxx::field f = row[static_cast<pqxx::row::size_type>(c)];
      Cell& cell = t.cells[i * ncols + c];
      cell.null = f.is_null();
      cell.data = f.c_str();
      cell.size = f.size();
    }
  }
  return t;
}

}  // namespace

std::string PreparedName(const std::string& sql) {
  // FNV-1a: stable across runs and builds, so logs and pg_prepared_statements name the same statement.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : sql) h = (h ^ c) * 1099511628211ULL;
  static const char* hex = "0123456789abcdef";
  std::string name = "pgpulse_";
  for (int shift = 60; shift >= 0; shift -= 4) name += hex[(h >> shift) & 0xf];
  return name;
}

pqxx::result RunReadOnly(pqxx::connection_base& conn, const std::string& sql, Millis timeout,
                         std::optional<int64_t> limit, const std::string& prepared_name) {
  pqxx::nontransaction tx(conn);
  const int64_t total = std::max<int64_t>(1, timeout.count());
  // lock_timeout fires first, so a query stuck behind a lock says so rather
  // than reporting a generic statement timeout.
  const int64_t lock = std::max<int64_t>(1, total * 3 / 4);
  // One round trip opens the guarded transaction; the caller's query is the second.
  tx.exec("BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = " + std::to_string(total) +
          "; SET LOCAL lock_timeout = " + std::to_string(lock));
  try {
    // The extended protocol runs exactly one statement, so a definition
    // cannot end the read-only transaction with "COMMIT; INSERT ...".
    pqxx::result r;
    if (prepared_name.empty()) {
      r = limit ? tx.exec_params(sql, *limit) : tx.exec_params(sql);
    } else {
      // Planned once per connection: catalog joins can take longer to plan than to run.
      conn.prepare(prepared_name, sql);
      r = limit ? tx.exec_prepared(prepared_name, *limit) : tx.exec_prepared(prepared_name);
    }
    tx.exec("COMMIT");
    return r;
  } catch (const pqxx::broken_connection&) {
    throw;
  } catch (...) {
    try {
      tx.exec("ROLLBACK");
    } catch (...) {
      // The original error is the one worth reporting.
    }
    throw;
  }
}

CollectorRun RunCollector(pqxx::connection_base& conn, const PlannedCollector& planned, Millis timeout,
                          const std::vector<std::pair<std::string, std::string>>& extra_labels) {
  CollectorRun run;
  auto start = std::chrono::steady_clock::now();
  try {
    const Definition& def = *planned.definition;
    std::optional<int64_t> limit;
    if (def.LimitsItself())
      limit = static_cast<int64_t>(std::min<size_t>(def.max_rows, std::numeric_limits<int64_t>::max()));
    pqxx::result r = RunReadOnly(conn, planned.variant->sql, timeout, limit, PreparedName(planned.variant->sql));
    run.mapped = MapRows(*planned.definition, ViewOf(r), extra_labels);
    run.success = run.mapped.error.empty();
    run.error = run.mapped.error;
  } catch (const pqxx::broken_connection& e) {
    run.connection_lost = true;
    run.error = std::string("connection lost: ") + e.what();
  } catch (const pqxx::sql_error& e) {
    // 57014 query_canceled: statement_timeout fired on the server.
    if (e.sqlstate() == "57014") run.error = "timed out after " + FormatDuration(timeout) + " (cancelled on the server): ";
    // 55P03 lock_not_available: lock_timeout fired.
    if (e.sqlstate() == "55P03") run.error = "waited too long for a lock (lock_timeout): ";
    run.error += e.what();
  } catch (const std::exception& e) {
    run.error = e.what();
  }
  if (!conn.is_open()) run.connection_lost = true;
  while (!run.error.empty() && (run.error.back() == '\n' || run.error.back() == ' ')) run.error.pop_back();
  run.duration_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

}  // namespace pgpulse::collectors
