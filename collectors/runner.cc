#include "collectors/runner.h"

#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>

#include "collectors/text.h"

namespace pgpulse::collectors {

namespace {

// Cells are read from `r` row by row as the mapping asks for them; `r` must outlive the view.
TableView ViewOf(const pqxx::result& r) {
  TableView t;
  const auto ncols = static_cast<size_t>(r.columns());
  t.columns.reserve(ncols);
  for (pqxx::row::size_type c = 0; c < r.columns(); ++c) t.columns.emplace_back(r.column_name(c));
  t.rows = r.size();
  t.row_source = [&r, ncols](size_t i, std::vector<Cell>& out) {
    out.resize(ncols);
    const pqxx::row row = r[static_cast<pqxx::result::size_type>(i)];
    size_t c = 0;
    // The row's own iterator: one pqxx::field for the whole row, not a copy of the result per cell.
    for (auto f = row.begin(); f != row.end() && c < ncols; ++f, ++c) {
      Cell& cell = out[c];
      cell.null = f->is_null();
      cell.data = f->c_str();
      cell.size = f->size();
    }
  };
  return t;
}

std::string Number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
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

void AddFilesystemColumns(const Definition& def, const FilesystemAccess& access, TableView& table,
                          std::vector<std::string>& storage, std::vector<std::string>& notes) {
  if (def.filesystem_column.empty()) return;
  auto path_col = std::find(table.columns.begin(), table.columns.end(), def.filesystem_column);
  if (path_col == table.columns.end()) return;  // mapping reports the missing column
  const size_t path_index = static_cast<size_t>(path_col - table.columns.begin());
  std::vector<size_t> wanted;  // indexes into kFilesystemColumns
  for (size_t k = 0; k < std::size(kFilesystemColumns); ++k) {
    if (def.FindColumn(kFilesystemColumns[k]) &&
        std::find(table.columns.begin(), table.columns.end(), kFilesystemColumns[k]) == table.columns.end())
      wanted.push_back(k);
  }
  const size_t old_cols = table.columns.size();
  const size_t new_cols = old_cols + wanted.size();
  // Sized once: the cells point into these strings.
  storage.assign(table.rows * wanted.size(), std::string());
  std::vector<Cell> cells(table.rows * new_cols);
  for (size_t r = 0; r < table.rows; ++r) {
    for (size_t c = 0; c < old_cols; ++c) cells[r * new_cols + c] = table.at(r, c);
    const Cell& path = table.at(r, path_index);
    FilesystemStat st = StatFilesystem(path.null ? std::string() : std::string(path.view()), access);
    if (!st.visible && std::find(notes.begin(), notes.end(), st.detail) == notes.end()) notes.push_back(st.detail);
    for (size_t w = 0; w < wanted.size(); ++w) {
      std::string& text = storage[r * wanted.size() + w];
      Cell& cell = cells[r * new_cols + old_cols + w];
      cell.null = false;
      switch (wanted[w]) {
        case 0:
          cell.null = !st.visible;
          text = Number(st.size_bytes);
          break;
        case 1:
          cell.null = !st.visible;
          text = Number(st.free_bytes);
          break;
        case 2:
          cell.null = !st.visible;
          text = Number(st.avail_bytes);
          break;
        case 3: text = st.visible ? "1" : "0"; break;
        case 4: text = st.reason; break;
        case 5: text = st.device; break;
      }
      cell.data = text.c_str();
      cell.size = text.size();
    }
  }
  for (size_t k : wanted) table.columns.emplace_back(kFilesystemColumns[k]);
  table.cells = std::move(cells);
  table.row_source = nullptr;
  table.cached_row = SIZE_MAX;
}

namespace {

// Opens the guarded transaction (READ ONLY, statement and lock timeouts, a savepoint), runs the
// run_if query and, when it says so, `body`; then ends the transaction. False: run_if said no.
// Throws pqxx exceptions, after rolling back.
template <typename Body>
bool InGuardedTransaction(pqxx::connection_base& conn, Millis timeout, const std::string& run_if, Body&& body) {
  pqxx::nontransaction tx(conn);
  const int64_t total = std::max<int64_t>(1, timeout.count());
  // lock_timeout fires first, so a query stuck behind a lock says so rather
  // than reporting a generic statement timeout.
  const int64_t lock = std::max<int64_t>(1, total * 3 / 4);
  // One round trip opens the guarded transaction; the caller's query is the second.
  // The savepoint lets the end of the transaction undo what a collector changed in the session.
  // cursor_tuple_fraction 1: a cursor (see FetchInBatches) reads every row, so its plan should be
  // the one for all rows, as for the query run whole, not for a fast first tenth.
  tx.exec("BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = " + std::to_string(total) +
          "; SET LOCAL lock_timeout = " + std::to_string(lock) +
          "; SET LOCAL cursor_tuple_fraction = 1; SAVEPOINT collector");
  try {
    // The extended protocol runs exactly one statement, so a definition
    // cannot end the read-only transaction with "COMMIT; INSERT ...".
    if (!run_if.empty()) {
      // Not prepared: it is small, and cheap to plan where the collector's own query is not.
      const pqxx::result go = tx.exec_params(run_if);
      if (go.empty() || go.columns() < 1 || go[0][0].is_null() || !go[0][0].as<bool>()) {
        tx.exec("ROLLBACK TO SAVEPOINT collector; COMMIT");
        return false;
      }
    }
    body(tx);
    // Rolling back to the savepoint undoes what a collector changed in the session (SET ROLE,
    // SET, set_config(..., false)) and closes its cursor; the transaction itself commits, so the
    // server's xact_rollback, and every rollback-ratio alert built on it, counts none of the
    // agent's queries. One round trip, as a plain COMMIT. Session-level advisory locks are not undone.
    tx.exec("ROLLBACK TO SAVEPOINT collector; COMMIT");
    return true;
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

pqxx::result RunWhole(pqxx::transaction_base& tx, const std::string& sql, std::optional<int64_t> limit,
                      const std::string& prepared_name) {
  if (prepared_name.empty()) return limit ? tx.exec_params(sql, *limit) : tx.exec_params(sql);
  // Planned once per connection: catalog joins can take longer to plan than to run.
  tx.conn().prepare(prepared_name, sql);
  return limit ? tx.exec_prepared(prepared_name, *limit) : tx.exec_prepared(prepared_name);
}

// Reads `sql`'s rows through a cursor, `batch_rows` at a time, handing each batch to `each` before
// the next is fetched (and stopping early when `each` says false: the rows cannot be used); the
// statement timeout covers all fetches together, as it covers a query run whole. False, with the transaction back at
// its savepoint, when `sql` cannot be a cursor's query (DECLARE takes a SELECT, VALUES or TABLE; not SHOW, say).
bool FetchInBatches(pqxx::transaction_base& tx, const std::string& sql, std::optional<int64_t> limit,
                    std::chrono::steady_clock::time_point deadline, size_t batch_rows,
                    const std::function<bool(const pqxx::result&)>& each) {
  const std::string declare = "DECLARE pgpulse_rows NO SCROLL CURSOR FOR " + sql;
  try {
    // Extended protocol, as for the query run whole: one statement, nothing after it.
    if (limit) tx.exec_params(declare, *limit);
    else tx.exec_params(declare);
  } catch (const pqxx::syntax_error&) {
    tx.exec("ROLLBACK TO SAVEPOINT collector");
    return false;
  }
  const std::string fetch = "; FETCH FORWARD " + std::to_string(batch_rows) + " FROM pgpulse_rows";
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    // As the server words a statement_timeout, so that the run reports it the same way.
    if (left <= 0) throw pqxx::sql_error("canceling statement due to statement timeout", "FETCH", "57014");
    const pqxx::result batch = tx.exec("SET LOCAL statement_timeout = " + std::to_string(left) + fetch);
    if (!each(batch) || batch.size() < batch_rows) return true;
  }
}

}  // namespace

std::optional<pqxx::result> RunReadOnly(pqxx::connection_base& conn, const std::string& sql, Millis timeout,
                                        std::optional<int64_t> limit, const std::string& prepared_name,
                                        const std::string& run_if) {
  std::optional<pqxx::result> r;
  if (!InGuardedTransaction(conn, timeout, run_if,
                            [&](pqxx::transaction_base& tx) { r = RunWhole(tx, sql, limit, prepared_name); }))
    return std::nullopt;
  return r;
}

CollectorRun RunCollector(pqxx::connection_base& conn, const PlannedCollector& planned, Millis timeout,
                          const std::vector<std::pair<std::string, std::string>>& extra_labels,
                          const FilesystemAccess& filesystem, const RowReading& reading) {
  CollectorRun run;
  auto start = std::chrono::steady_clock::now();
  try {
    const Definition& def = *planned.definition;
    const std::string& sql = planned.variant->sql;
    std::optional<int64_t> limit;
    if (def.LimitsItself())
      limit = static_cast<int64_t>(std::min<size_t>(def.max_rows, std::numeric_limits<int64_t>::max()));
    const std::string prepared_name = reading.prepare ? PreparedName(sql) : "";
    const bool batches = RowMapper::Batches(def);
    RowMapper mapper(def, extra_labels);
    mapper.Expect(reading.expected_rows);
    // Adds the filesystem columns to one result (all rows, or one batch) and maps it: into `mapper`,
    // or for a pivot or name_suffix definition all rows at once (MapRows).
    auto map = [&](TableView table) {
      run.rows += table.rows;
      std::vector<std::string> storage;
      AddFilesystemColumns(def, filesystem, table, storage, run.notes);
      if (batches) return mapper.Add(table);
      run.mapped = MapRows(def, table, extra_labels);
      return run.mapped.error.empty();
    };
    const bool ran = InGuardedTransaction(conn, timeout, def.run_if_sql, [&](pqxx::transaction_base& tx) {
      if (reading.batch_rows > 0 && batches) {
        run.batched = true;  // also when a fetch fails
        run.batched = FetchInBatches(tx, sql, limit, start + timeout, reading.batch_rows,
                                     [&](const pqxx::result& r) { return map(ViewOf(r)); });
        run.declarable = run.batched;
        if (run.batched) return;
      }
      const pqxx::result r = RunWhole(tx, sql, limit, prepared_name);
      map(ViewOf(r));
    });
    if (!ran) {
      // run_if said there is nothing to report: the result of a query that found no rows.
      TableView table;
      for (const Column& c : def.columns) table.columns.push_back(c.name);
      map(table);
      run.notes.push_back("not run: its run_if query found nothing to report here");
    }
    if (batches) run.mapped = mapper.Finish();
    run.success = run.mapped.error.empty();
    run.error = run.mapped.error;
  } catch (const pqxx::broken_connection& e) {
    run.connection_lost = true;
    run.error = std::string("connection lost: ") + e.what();
  } catch (const pqxx::sql_error& e) {
    // 57014 query_canceled: statement_timeout fired on the server.
    if (e.sqlstate() == "57014")
      run.error = "timed out after " + FormatDuration(timeout) + " (cancelled on the server): ";
    // 55P03 lock_not_available: lock_timeout fired.
    if (e.sqlstate() == "55P03") run.error = "waited too long for a lock (lock_timeout): ";
    // 26000 invalid_sql_statement_name: prepared on another server connection than this one.
    if (e.sqlstate() == "26000" && reading.prepare)
      run.error =
          "the server connection does not have this collector's prepared statement (a transaction-pooling "
          "proxy between the agent and PostgreSQL? then set prepared_statements: false on the target): ";
    run.error += e.what();
  } catch (const std::exception& e) {
    run.error = e.what();
  }
  if (!conn.is_open()) run.connection_lost = true;
  run.error = OneLine(run.error);
  run.duration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

}  // namespace pgpulse::collectors
