#pragma once
// A connection to a PgBouncer admin console, and running collectors on it.
//
// Plain libpq rather than libpqxx: libpqxx 6 refuses a server that reports a
// version below 9.0, and the console reports PgBouncer's own (1.18.0 -> 11800).
// The console speaks only the simple query protocol, rejects BEGIN and SET, and
// has no statement_timeout, so the timeout is enforced here, on the client.
//
// Not thread-safe: one thread (the target's worker) owns a connection.

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "collectors/duration.h"
#include "collectors/mapping.h"
#include "collectors/plan.h"
#include "collectors/runner.h"
#include "collectors/session.h"

namespace pgpulse::collectors {

class ConsoleResult {
 public:
  explicit ConsoleResult(PGresult* r) : r_(r, &PQclear) {}
  // Cells point into the result, which must outlive the view.
  TableView View() const;
  int rows() const { return PQntuples(r_.get()); }
  // Row `row`, column `col` as text; "" when out of range or NULL.
  std::string Text(int row, int col) const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

class ConsoleConnection {
 public:
  // Connects with libpq (the conninfo's connect_timeout bounds the wait).
  // Returns nullptr and sets `error` on failure.
  static std::unique_ptr<ConsoleConnection> Open(const std::string& conninfo, std::string& error);
  ~ConsoleConnection();
  ConsoleConnection(const ConsoleConnection&) = delete;
  ConsoleConnection& operator=(const ConsoleConnection&) = delete;

  bool usable() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

  // Sends `sql` (one SHOW command) and waits for its result up to `timeout`.
  // On failure returns nullptr and sets `error`; `lost` says the connection
  // is unusable (closed here on a timeout, since a late answer would
  // otherwise be read as the next command's).
  std::unique_ptr<ConsoleResult> Exec(const std::string& sql, Millis timeout, std::string& error, bool& lost);

 private:
  explicit ConsoleConnection(PGconn* conn) : conn_(conn) {}
  void Close();
  PGconn* conn_;
};

// RunCollector for a pgbouncer definition on a console connection.
CollectorRun RunConsoleCollector(ConsoleConnection& conn, const PlannedCollector& planned, Millis timeout,
                                 const std::vector<std::pair<std::string, std::string>>& extra_labels);

// PgBouncer's SHOW VERSION text ("PgBouncer 1.18.0") as major*10000 +
// minor*100 + patch (11800) and the version ("1.18.0"); nullopt if unreadable.
std::optional<std::pair<int, std::string>> ParsePgBouncerVersion(const std::string& text);

// A session on a PgBouncer admin console: SHOW VERSION for the facts, no databases of its own,
// no data directory.
class ConsoleSession : public Session {
 public:
  // Throws on failure.
  static std::unique_ptr<ConsoleSession> Open(const std::string& conninfo);

  bool usable() const override { return conn_ && conn_->usable(); }
  ServerFacts ReadFacts(Millis timeout, std::string& database) override;
  bool has_databases() const override { return false; }
  std::vector<std::string> ListDatabases(Millis timeout) override;
  std::vector<std::string> ListNames(const std::string& sql, Millis timeout) override;
  std::set<std::string> ReadExtensions(Millis timeout) override;
  ServerLocation ReadLocation(Millis timeout) override;
  CollectorRun Run(const PlannedCollector& planned, Millis timeout, const Labels& extra_labels,
                   const FilesystemAccess& filesystem) override;

 private:
  explicit ConsoleSession(std::unique_ptr<ConsoleConnection> conn) : conn_(std::move(conn)) {}
  std::unique_ptr<ConsoleConnection> conn_;
};

}  // namespace pgpulse::collectors
