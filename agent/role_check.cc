#include "agent/role_check.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "agent/credentials.h"
#include "agent/log.h"
#include "collectors/text.h"

namespace pgpulse::agent {

namespace {

// The server stops the question itself shortly after the client stops waiting for it.
// A standby's replay lag: 0 when everything it received is replayed. Measured as now() minus the
// last replayed commit's time alone, a standby of an idle primary (no commits to replay) would
// look further behind every second although it is fully caught up. The price: a standby whose
// WAL receiver lost the primary also answers 0 once it has replayed what it got; the replication
// collectors and alerts (pg_replication_*) watch the receiver. Restoring from an archive only
// (no WAL receiver), the receive position is NULL and the commit time is used.
constexpr const char* kRoleQuery =
    "SET statement_timeout = 2000; "
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END";

// Waits until the connection's socket is ready for `events` or `deadline` passes.
bool WaitFor(PGconn* conn, short events, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{PQsocket(conn), events, 0};
  if (p.fd < 0) return false;
  int n = poll(&p, 1, static_cast<int>(left));
  return n > 0 || (n < 0 && errno == EINTR);
}

std::string Message(PGconn* conn) { return Redact(collectors::OneLine(PQerrorMessage(conn))); }

// Connects without blocking past `deadline`: libpq's connect_timeout counts whole seconds.
PGconn* Connect(const std::string& conninfo, Clock::time_point deadline, std::string& error) {
  PGconn* conn = PQconnectStart(conninfo.c_str());
  if (!conn) {
    error = "out of memory";
    return nullptr;
  }
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED || PQstatus(conn) == CONNECTION_BAD) {
      error = "cannot connect: " + Message(conn);
      PQfinish(conn);
      return nullptr;
    }
    if (!WaitFor(conn, status == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
      error = "cannot connect: no answer within " + std::to_string(kRoleCheckBound.count()) + " ms";
      PQfinish(conn);
      return nullptr;
    }
    status = PQconnectPoll(conn);
  }
  return conn;
}

// Sends the role query and reads its last result by `deadline`; false with `error` otherwise.
bool Query(PGconn* conn, Clock::time_point deadline, RoleFact& fact, std::string& error) {
  if (PQsetnonblocking(conn, 1) != 0 || !PQsendQuery(conn, kRoleQuery)) {
    error = Message(conn);
    return false;
  }
  while (PQflush(conn) == 1) {
    if (!WaitFor(conn, POLLOUT, deadline)) break;
  }
  std::string failed;
  bool have_row = false;
  for (;;) {
    while (PQisBusy(conn)) {
      if (!WaitFor(conn, POLLIN, deadline)) {
        error = "the server did not answer within " + std::to_string(kRoleCheckBound.count()) + " ms";
        return false;
      }
      if (!PQconsumeInput(conn)) {
        error = Message(conn);
        return false;
      }
    }
    PGresult* r = PQgetResult(conn);
    if (!r) break;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      have_row = true;
      fact.in_recovery = std::string(PQgetvalue(r, 0, 0)) == "t";
      if (PQgetisnull(r, 0, 1)) fact.lag_seconds.reset();
      else fact.lag_seconds = std::strtod(PQgetvalue(r, 0, 1), nullptr);
    } else if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      failed = Redact(PQresultErrorMessage(r));
    }
    PQclear(r);
  }
  if (!failed.empty() || !have_row) {
    error = failed.empty() ? "the role query returned no row" : collectors::OneLine(failed);
    return false;
  }
  return true;
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

}  // namespace

RoleAnswer AnswerRole(RoleQuestion question, const RoleFact& fact, double max_lag_seconds) {
  if (!fact.known) return {503, "unknown: " + fact.error + "\n"};
  if (!fact.in_recovery) {
    if (question == RoleQuestion::Replica) return {503, "not a replica: the server is a primary\n"};
    return {200, "primary\n"};
  }
  if (question == RoleQuestion::Primary) return {503, "not the primary: the server is a replica (in recovery)\n"};
  const std::string lag = fact.lag_seconds ? Seconds(*fact.lag_seconds) : "unknown (no commit replayed yet)";
  if (max_lag_seconds >= 0 && (!fact.lag_seconds || *fact.lag_seconds > max_lag_seconds))
    return {503, "replica lagging: replay lag " + lag + " exceeds max_lag " + Seconds(max_lag_seconds) + "\n"};
  return {200, "replica, replay lag " + lag + "\n"};
}

RoleChecker::~RoleChecker() {
  for (auto& [key, e] : entries_) {
    if (e.conn) PQfinish(e.conn);
  }
}

void RoleChecker::DropRetired() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.target.expired() && !it->second.running) {
      if (it->second.conn) PQfinish(it->second.conn);
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

RoleFact RoleChecker::Ask(const Target& target, PGconn*& conn) {
  RoleFact fact;
  const Clock::time_point deadline = Clock::now() + kRoleCheckBound;
  std::string error;
  // A kept connection that the server closed since (a restart, a failover) fails first: one
  // fresh connection, within the same bound, tells a restarted server from a down one.
  for (int attempt = 0; attempt < 2 && !fact.known; ++attempt) {
    const bool kept = conn != nullptr;
    if (conn && PQstatus(conn) != CONNECTION_OK) {
      PQfinish(conn);
      conn = nullptr;
    }
    error.clear();
    try {
      if (!conn) {
        // A password_command counts against the same bound.
        TargetConfig bounded = target.config();
        bounded.password_command_timeout =
            std::min(bounded.password_command_timeout,
                     std::max(std::chrono::milliseconds(1),
                              std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())));
        conn = Connect(ConninfoForNewConnection(bounded, target.spec().conninfo), deadline, error);
      }
    } catch (const CredentialError& e) {
      error = e.what();
    }
    if (conn && Query(conn, deadline, fact, error)) {
      fact.known = true;
      break;
    }
    if (conn) PQfinish(conn);
    conn = nullptr;
    if (!kept || Clock::now() >= deadline) break;
  }
  if (!fact.known) {
    fact.error = error;
    LogDebug("role check failed", {{"target", target.config().name}, {"error", error}});
  }
  fact.at = Clock::now();
  return fact;
}

RoleFact RoleChecker::Check(const std::shared_ptr<Target>& target) {
  std::unique_lock<std::mutex> lock(mu_);
  DropRetired();
  auto [it, added] = entries_.try_emplace(target.get());
  Entry& e = it->second;
  if (added) e.target = target;
  const Clock::time_point asked = Clock::now();
  // Another request asking the same server: share its answer rather than ask twice.
  cv_.wait_until(lock, asked + kRoleCheckBound + std::chrono::milliseconds(200), [&] { return !e.running; });
  if (e.fact.at != Clock::time_point{} && Clock::now() - e.fact.at <= kRoleFactMaxAge) return e.fact;
  if (e.running) return RoleFact{false, false, std::nullopt, "another check of this server is still waiting", {}};
  e.running = true;
  PGconn* conn = e.conn;
  lock.unlock();
  RoleFact fact = Ask(*target, conn);
  lock.lock();
  e.conn = conn;
  e.fact = fact;
  e.running = false;
  cv_.notify_all();
  return fact;
}

}  // namespace pgpulse::agent
