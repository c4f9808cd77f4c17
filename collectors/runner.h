#pragma once
// Runs one planned collector on one connection: READ ONLY transaction,
// server-side statement and lock timeouts, rows mapped to families. (A
// PgBouncer console runs collectors through collectors/console.h.)

#include <pqxx/connection>

#include <string>
#include <utility>
#include <vector>

#include "collectors/duration.h"
#include "collectors/mapping.h"
#include "collectors/plan.h"

namespace pgpulse::collectors {

struct CollectorRun {
  bool success = false;
  bool connection_lost = false;  // the connection is unusable; reconnect before the next query
  std::string error;
  double duration_seconds = 0;
  MappedResult mapped;
};

// Runs `sql` in `BEGIN READ ONLY` with statement_timeout set to `timeout`
// and lock_timeout to three quarters of it, then maps the rows. Never throws
// for database errors.
CollectorRun RunCollector(pqxx::connection_base& conn, const PlannedCollector& planned, Millis timeout,
                          const std::vector<std::pair<std::string, std::string>>& extra_labels);

// Runs a query the same guarded way and returns its raw result; throws
// pqxx exceptions. Used for the agent's own catalog queries.
pqxx::result RunReadOnly(pqxx::connection_base& conn, const std::string& sql, Millis timeout);

}  // namespace pgpulse::collectors
