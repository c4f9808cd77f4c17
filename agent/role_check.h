#pragma once
// What /primary, /replica and /read answer: whether a target's server is a primary or a replica
// (and how far its replay lags), asked of the server itself, for load balancers and proxies
// (HAProxy `option httpchk GET /primary`, Envoy, Kubernetes readiness gates).
//
// A check uses a connection of its own per target (not the target's collection connection, which
// a long scrape may hold), kept between checks and dropped on any error. A fact younger than
// kRoleFactMaxAge answers without asking again; concurrent checks of one target share one
// question. Connecting and asking together end within kRoleCheckBound (a hung server is
// "unknown", never a hung request).
//
// Threads: HTTP worker threads call Check. `mu_` guards the entries and is never held while
// waiting on the server; an entry's connection is used only by the thread that set `running`.

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent/target.h"

typedef struct pg_conn PGconn;

namespace pgpulse::agent {

constexpr std::chrono::milliseconds kRoleFactMaxAge{2'000};
constexpr std::chrono::milliseconds kRoleCheckBound{2'500};

struct RoleFact {
  bool known = false;        // false: the server did not answer in time (see error)
  bool in_recovery = false;  // a standby
  // Replay lag of a standby, seconds: 0 when it has replayed all the WAL it received (so an
  // idle primary does not look like lag), else now() - the last replayed commit's time; nullopt
  // when the standby has not replayed any commit yet.
  std::optional<double> lag_seconds;
  std::string error;
  Clock::time_point at{};
};

enum class RoleQuestion { Primary, Replica, Read };

struct RoleAnswer {
  int status = 503;  // 200 when the answer is yes
  std::string body;  // one line
};

// The answer to a question about a fact; `max_lag_seconds` < 0 means no lag limit.
RoleAnswer AnswerRole(RoleQuestion question, const RoleFact& fact, double max_lag_seconds);

class RoleChecker {
 public:
  RoleChecker() = default;
  ~RoleChecker();  // closes the kept connections
  RoleChecker(const RoleChecker&) = delete;
  RoleChecker& operator=(const RoleChecker&) = delete;

  // A fact about `target` no older than kRoleFactMaxAge, found within about kRoleCheckBound.
  RoleFact Check(const std::shared_ptr<Target>& target);

 private:
  struct Entry {
    std::weak_ptr<Target> target;  // a reload that replaces the target retires its entry
    PGconn* conn = nullptr;        // the check's own connection; used only while `running`
    bool running = false;
    RoleFact fact;
  };
  // Asks the server, on `entry.conn` (connecting first when needed); closes it on failure.
  static RoleFact Ask(const Target& target, PGconn*& conn);
  void DropRetired();  // caller holds mu_

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<const Target*, Entry> entries_;  // guarded by mu_
};

}  // namespace pgpulse::agent
