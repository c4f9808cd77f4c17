#pragma once
// The sessions of one target: the one on the DSN's own database, and, with
// database discovery, one per other database (at most max_connections open,
// the least recently used closed first). Every new connection goes through
// Connect, with its backoff, and takes its connection string from
// ConninfoForNewConnection.
//
// Not thread-safe: the target's worker thread owns it. The one thing done on another thread is a
// prefetch (Prefetch): opening the next database's connection while the worker is busy in another.

#include <future>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/deadline.h"
#include "agent/dsn.h"
#include "collectors/plan.h"
#include "collectors/session.h"

namespace pgpulse::agent {

// Whether a target is a PostgreSQL server or a PgBouncer admin console:
// config.type, or when that is empty, pgbouncer if the DSN's dbname is.
collectors::TargetKind ResolveTargetKind(const TargetConfig& config, const ConnectionSpec& spec);

class DatabasePool {
 public:
  // A session and what the pool knows of it.
  struct Slot {
    std::unique_ptr<collectors::Session> session;
    std::set<std::string> extensions;  // other databases: installed there (the own one's are in the facts)
    Clock::time_point last_used{};
    Clock::time_point next_attempt{};  // no new connection before
    std::chrono::milliseconds backoff{0};
    std::string last_error;
  };

  DatabasePool(const TargetConfig& config, const ConnectionSpec& spec);
  ~DatabasePool();
  DatabasePool(const DatabasePool&) = delete;
  DatabasePool& operator=(const DatabasePool&) = delete;

  collectors::TargetKind kind() const { return kind_; }

  // Connects (or reconnects) the own session and reads the server's facts. A session left over
  // from before a server restart fails first; one fresh attempt tells a restart from an outage.
  bool ReadFacts(collectors::ServerFacts& facts, Clock::time_point deadline, std::string& error);
  // The own session (nullptr when not connected).
  collectors::Session* own() { return own_.session.get(); }
  const std::string& own_database() const { return own_database_; }

  // Lists the server's databases again when discovery is on and its refresh is due. Returns
  // true when the list changed.
  bool Discover(Clock::time_point deadline);
  // Where database-scoped collectors run: the discovered databases, or the own one.
  std::vector<std::string> Databases() const;
  // The session for `database`: the own one, or another opened before `deadline`
  // (closing the least recently used beyond max_connections); nullptr with `error`.
  Slot* Open(const std::string& database, Clock::time_point deadline, std::string& error);
  // Starts opening `database`'s connection on another thread, for the Open that will ask for it
  // next: a collection calls this for the next database while it works in this one, so that
  // connecting (backend start, authentication, the extension list) overlaps collector queries
  // instead of adding to them. Counts against max_connections like any connection, and is not
  // done when that leaves no room beside the own connection and the one in use (fewer than 3),
  // when the database has a usable session or is backing off, or while another is in flight.
  void Prefetch(const std::string& database, Clock::time_point deadline);

 private:
  // The connection string for a new connection to `database` ("" = the DSN's own). The one
  // place connection strings are made (credentials that change go here).
  std::string ConninfoForNewConnection(const std::string& database, std::optional<Clock::time_point> deadline) const;
  // Opens `slot`'s session unless its backoff forbids; the one connect-with-backoff helper.
  bool Connect(Slot& slot, const std::string& database, std::optional<Clock::time_point> deadline, std::string& error);
  bool Wanted(const std::string& database) const;
  void CloseLeastRecentlyUsed();
  void CloseGone(const std::vector<std::string>& found);
  // A prefetch's outcome, once its thread is done.
  struct Prefetched {
    std::string database;
    Slot slot;
    bool connected = false;
    std::string error;
  };
  // Files the slot of the prefetch in flight (or its failure's backoff) under its database and
  // returns what became of it; waits for it to finish when `wait`, else only takes one that has.
  std::optional<Prefetched> Settle(bool wait);

  const TargetConfig& config_;
  const ConnectionSpec& spec_;
  const collectors::TargetKind kind_;
  std::vector<std::regex> include_, exclude_;

  Slot own_;
  std::string own_database_;
  std::map<std::string, Slot> others_;   // databases other than own_database_
  std::vector<std::string> discovered_;  // from the last discovery, sorted
  Clock::time_point discovered_at_{};
  bool discovery_done_ = false;
  // Last, so that it is destroyed (its thread waited for) before what that thread uses.
  std::optional<std::pair<std::string, std::future<Prefetched>>> prefetch_;
};

}  // namespace pgpulse::agent
