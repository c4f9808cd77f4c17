#include "collectors/console.h"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <regex>

#include "collectors/text.h"

namespace pgpulse::collectors {

namespace {

std::string Trimmed(const char* message) {
  std::string s = OneLine(message ? message : "");
  return s.empty() ? "unknown error" : s;
}

}  // namespace

TableView ConsoleResult::View() const {
  PGresult* r = r_.get();
  TableView t;
  const int ncols = PQnfields(r);
  for (int c = 0; c < ncols; ++c) t.columns.emplace_back(PQfname(r, c));
  t.rows = static_cast<size_t>(PQntuples(r));
  t.cells.resize(t.rows * static_cast<size_t>(ncols));
  for (size_t i = 0; i < t.rows; ++i) {
    for (int c = 0; c < ncols; ++c) {
      Cell& cell = t.cells[i * static_cast<size_t>(ncols) + static_cast<size_t>(c)];
      const int row = static_cast<int>(i);
      cell.null = PQgetisnull(r, row, c) != 0;
      cell.data = PQgetvalue(r, row, c);
      cell.size = static_cast<size_t>(PQgetlength(r, row, c));
    }
  }
  return t;
}

std::string ConsoleResult::Text(int row, int col) const {
  PGresult* r = r_.get();
  if (row < 0 || col < 0 || row >= PQntuples(r) || col >= PQnfields(r) || PQgetisnull(r, row, col)) return "";
  return PQgetvalue(r, row, col);
}

std::unique_ptr<ConsoleConnection> ConsoleConnection::Open(const std::string& conninfo, std::string& error) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (!conn) {
    error = "out of memory";
    return nullptr;
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    error = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return nullptr;
  }
  return std::unique_ptr<ConsoleConnection>(new ConsoleConnection(conn));
}

ConsoleConnection::~ConsoleConnection() { Close(); }

void ConsoleConnection::Close() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

std::unique_ptr<ConsoleResult> ConsoleConnection::Exec(const std::string& sql, Millis timeout, std::string& error,
                                                       bool& lost) {
  lost = false;
  if (!usable()) {
    error = "not connected";
    lost = true;
    return nullptr;
  }
  // PQsendQuery is the simple protocol (the console has no extended one).
  if (!PQsendQuery(conn_, sql.c_str())) {
    error = Trimmed(PQerrorMessage(conn_));
    lost = PQstatus(conn_) != CONNECTION_OK;
    return nullptr;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (PQisBusy(conn_)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error = "no answer within " + FormatDuration(timeout) + " (timed out on the client); connection closed";
      Close();
      lost = true;
      return nullptr;
    }
    pollfd p{PQsocket(conn_), POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) {
      error = "poll failed; connection closed";
      Close();
      lost = true;
      return nullptr;
    }
    if (n > 0 && !PQconsumeInput(conn_)) {
      error = "connection lost: " + Trimmed(PQerrorMessage(conn_));
      Close();
      lost = true;
      return nullptr;
    }
  }
  std::unique_ptr<ConsoleResult> last;
  std::string failure;
  while (PGresult* r = PQgetResult(conn_)) {
    ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_TUPLES_OK) {
      last = std::make_unique<ConsoleResult>(r);
    } else {
      if (failure.empty()) failure = Trimmed(PQresultErrorMessage(r));
      PQclear(r);
    }
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    error = "connection lost: " + (failure.empty() ? Trimmed(PQerrorMessage(conn_)) : failure);
    Close();
    lost = true;
    return nullptr;
  }
  if (!failure.empty() || !last) {
    error = failure.empty() ? "the command returned no rows result" : failure;
    return nullptr;
  }
  return last;
}

CollectorRun RunConsoleCollector(ConsoleConnection& conn, const PlannedCollector& planned, Millis timeout,
                                 const std::vector<std::pair<std::string, std::string>>& extra_labels) {
  CollectorRun run;
  auto start = std::chrono::steady_clock::now();
  bool lost = false;
  std::unique_ptr<ConsoleResult> result = conn.Exec(planned.variant->sql, timeout, run.error, lost);
  run.connection_lost = lost;
  if (result) {
    run.mapped = MapRows(*planned.definition, result->View(), extra_labels);
    run.success = run.mapped.error.empty();
    run.error = run.mapped.error;
  }
  run.duration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

std::optional<std::pair<int, std::string>> ParsePgBouncerVersion(const std::string& text) {
  // "PgBouncer 1.18.0"; older releases said "PgBouncer version 1.9.0".
  static const std::regex version("([0-9]+)\\.([0-9]+)(?:\\.([0-9]+))?");
  std::smatch m;
  if (!std::regex_search(text, m, version)) return std::nullopt;
  int major = std::stoi(m[1].str().substr(0, 4)), minor = std::stoi(m[2].str().substr(0, 4));
  int patch = m[3].matched ? std::stoi(m[3].str().substr(0, 4)) : 0;
  if (minor > 99 || patch > 99) return std::nullopt;
  return std::make_pair(major * 10000 + minor * 100 + patch, m.str(0));
}

std::unique_ptr<ConsoleSession> ConsoleSession::Open(const std::string& conninfo) {
  std::string why;
  auto conn = ConsoleConnection::Open(conninfo, why);
  if (!conn) throw std::runtime_error(why);
  return std::unique_ptr<ConsoleSession>(new ConsoleSession(std::move(conn)));
}

ServerFacts ConsoleSession::ReadFacts(Millis timeout, std::string& database) {
  std::string error;
  bool lost = false;
  auto r = conn_ ? conn_->Exec("SHOW VERSION", timeout, error, lost) : nullptr;
  if (!r) {
    if (!conn_) error = "not connected", lost = true;
    if (lost) conn_.reset();
    // A console that hung once would hang the retry too.
    if (lost && error.find("timed out") == std::string::npos) throw SessionLost(error);
    throw std::runtime_error(error);
  }
  const std::string text = r->Text(0, 0);
  auto v = ParsePgBouncerVersion(text);
  if (!v)
    throw std::runtime_error("SHOW VERSION answered '" + text.substr(0, 80) + "', which names no PgBouncer version");
  ServerFacts facts;
  facts.kind = TargetKind::PgBouncer;
  facts.version_num = v->first;
  facts.version = v->second;
  database = "pgbouncer";
  return facts;
}

std::vector<std::string> ConsoleSession::ListDatabases(Millis) {
  throw std::runtime_error("a PgBouncer console has no databases to discover");
}

std::vector<std::string> ConsoleSession::ListNames(const std::string&, Millis) {
  throw std::runtime_error("a PgBouncer console runs no queries of the agent's own");
}

std::set<std::string> ConsoleSession::ReadExtensions(Millis) { return {}; }

ServerLocation ConsoleSession::ReadLocation(Millis) {
  throw std::runtime_error("a PgBouncer console has no data directory");
}

CollectorRun ConsoleSession::Run(const PlannedCollector& planned, Millis timeout, const Labels& extra_labels,
                                 const FilesystemAccess&) {
  if (!conn_) {
    CollectorRun run;
    run.connection_lost = true;
    run.error = "connection lost: not connected";
    return run;
  }
  CollectorRun run = RunConsoleCollector(*conn_, planned, timeout, extra_labels);
  if (run.connection_lost) conn_.reset();
  return run;
}

}  // namespace pgpulse::collectors
