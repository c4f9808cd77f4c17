#include "collectors/console.h"

#include <poll.h>

#include <chrono>
#include <cerrno>

namespace pgpulse::collectors {

namespace {

std::string Trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
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

}  // namespace pgpulse::collectors
