#pragma once
// Runs one planned collector on one connection: READ ONLY transaction,
// server-side statement and lock timeouts, rows mapped to families. (A
// PgBouncer console runs collectors through collectors/console.h.)

#include <pqxx/connection>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "collectors/duration.h"
#include "collectors/filesystem.h"
#include "collectors/mapping.h"
#include "collectors/plan.h"

namespace pgpulse::collectors {

struct CollectorRun {
  bool success = false;
  bool connection_lost = false;  // the connection is unusable; reconnect before the next query
  std::string error;
  double duration_seconds = 0;
  MappedResult mapped;
  // Things worth telling people although the run succeeded (e.g. a
  // filesystem that could not be looked at, and why); one sentence each.
  std::vector<std::string> notes;
  size_t rows = 0;         // rows the query returned
  bool batched = false;    // they were read (or reading them failed) through a cursor, a batch at a time
  bool declarable = true;  // false: the query cannot be a cursor's (SHOW, say), so it was run whole
};

// How RunCollector reads a query's rows.
struct RowReading {
  // As a named prepared statement (see PreparedName), planned once per connection; or planned
  // each time (through a transaction-pooling proxy, where a connection's statements are not ours).
  bool prepare = true;
  // More than 0: through a cursor, this many rows at a time, each batch mapped before the next is
  // fetched, so a result of 30,000 tables is never held whole (in libpq's memory as well as ours).
  // Planned each time, as a cursor's query cannot be a prepared statement: for large results,
  // where planning is a small part of the run. Pivot and name_suffix definitions are read whole.
  size_t batch_rows = 0;
  // Rows the query returned last time (0: not known), reserved for up front (RowMapper::Expect).
  size_t expected_rows = 0;
};

// Runs `sql` in `BEGIN READ ONLY` with statement_timeout set to `timeout`
// and lock_timeout to three quarters of it, then maps the rows. Never throws
// for database errors. `filesystem` says whether a definition with a
// `filesystem:` key may look at the local filesystem.
CollectorRun RunCollector(pqxx::connection_base& conn, const PlannedCollector& planned, Millis timeout,
                          const std::vector<std::pair<std::string, std::string>>& extra_labels,
                          const FilesystemAccess& filesystem = {}, const RowReading& reading = {});

// Appends to `table` the fs_* columns `def` describes, statting the path in
// its filesystem column on each row; `storage` keeps the added cells' text.
void AddFilesystemColumns(const Definition& def, const FilesystemAccess& access, TableView& table,
                          std::vector<std::string>& storage, std::vector<std::string>& notes);

// Runs a query the same guarded way and returns its raw result; throws
// pqxx exceptions. Used for the agent's own catalog queries. `limit`, when
// set, is bound to $1 (a definition that limits itself). With a
// `prepared_name` the statement is prepared once per connection and reused.
// With `run_if`, that query runs first in the same transaction, and when its
// first value is not true `sql` is not run at all: nullopt.
std::optional<pqxx::result> RunReadOnly(pqxx::connection_base& conn, const std::string& sql, Millis timeout,
                                        std::optional<int64_t> limit = std::nullopt,
                                        const std::string& prepared_name = "", const std::string& run_if = "");

// The prepared statement name for a collector's SQL: derived from the text, so an edited
// definition (after a reload) gets a new statement rather than colliding with the old one.
std::string PreparedName(const std::string& sql);

}  // namespace pgpulse::collectors
