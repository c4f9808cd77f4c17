#pragma once
// One connection to a watched server, as the agent uses it: read the server's
// facts, list and describe its databases, run a planned collector. The two
// kinds of server live behind it: PostgreSQL (collectors/postgres_session.h,
// libpqxx) and the PgBouncer admin console (collectors/console.h, libpq). Every
// decision that differs between them is made in those two and in OpenSession.
//
// Not thread-safe: one thread (the target's worker) owns a session.

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "collectors/definition.h"
#include "collectors/duration.h"
#include "collectors/filesystem.h"
#include "collectors/plan.h"
#include "collectors/runner.h"

namespace pgpulse::collectors {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Thrown by a session whose connection broke: a fresh connection may succeed where it failed.
class SessionLost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where a PostgreSQL server keeps its files and who it is, to decide whether
// the agent may look at them (agent/sources/filesystem_access.h).
struct ServerLocation {
  bool local = false;          // reached over a Unix socket or a loopback address
  std::string address;         // the server's address, or "a Unix socket"
  std::string data_directory;  // as the server sees it
  std::string port;
  long long started = 0;  // pg_postmaster_start_time(), Unix seconds
  // Where the server writes its log (for the logs source): logging_collector, log_destination, and the
  // files pg_current_logfile() names when this role may call it (superuser or GRANTed EXECUTE).
  bool logging_collector = false;
  std::string log_destination;
  bool may_ask_logfile = false;
  std::string current_csvlog, current_jsonlog;  // "" when not written (or not asked)
};

class Session {
 public:
  virtual ~Session() = default;

  // False once the connection is lost or closed: open a new session.
  virtual bool usable() const = 0;
  // The server's facts, `database` the one this session is connected to.
  // Throws SessionLost when the connection broke, std::exception otherwise.
  virtual ServerFacts ReadFacts(Millis timeout, std::string& database) = 0;
  // Whether the server has databases of its own to discover and connect to.
  virtual bool has_databases() const = 0;
  // The databases that accept connections, sorted. Throws.
  virtual std::vector<std::string> ListDatabases(Millis timeout) = 0;
  // The first column of a query's rows (e.g. a definition's run_in: the databases to run it in). Throws.
  virtual std::vector<std::string> ListNames(const std::string& sql, Millis timeout) = 0;
  // The extensions installed in the connected database. Throws.
  virtual std::set<std::string> ReadExtensions(Millis timeout) = 0;
  // Throws SessionLost when the connection broke, std::exception otherwise.
  virtual ServerLocation ReadLocation(Millis timeout) = 0;
  // Runs one planned collector; never throws for the server's errors.
  virtual CollectorRun Run(const PlannedCollector& planned, Millis timeout, const Labels& extra_labels,
                           const FilesystemAccess& filesystem) = 0;
};

struct SessionOptions {
  bool prepared_statements = true;  // PostgreSQL: collectors' SQL as named prepared statements
  // When set, the connect must end by then (PostgreSQL: libpq's connect_timeout counts whole
  // seconds, so with less than 2 s left the server is first asked with a bounded poll).
  std::optional<std::chrono::steady_clock::time_point> connect_by;
};

// Connects to a server of `kind`. Throws std::exception with the reason on failure.
std::unique_ptr<Session> OpenSession(TargetKind kind, const std::string& conninfo, const SessionOptions& options);

}  // namespace pgpulse::collectors
