#pragma once
// One PostgreSQL server the agent watches: its persistent connection and
// the collections that scrapes trigger.
//
// Threads: HTTP threads call Scrape/Last/CheckReachable; one worker thread
// per target owns the connection and runs collections. `mu_` guards the
// request hand-off and the last result only; it is never held while waiting
// on the database. Concurrent scrapes share one collection (singleflight).

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <pqxx/connection>

#include "agent/backrest_collector.h"
#include "agent/config.h"
#include "agent/dsn.h"
#include "agent/self_metrics.h"
#include "collectors/console.h"
#include "collectors/definition.h"
#include "collectors/family.h"
#include "collectors/filesystem.h"
#include "collectors/plan.h"

namespace pgpulse::agent {

namespace sources {
class LogSource;  // logs: errors by kind from the server's log (agent/sources/logs.h)
}

using Clock = std::chrono::steady_clock;
using Definitions = std::vector<collectors::Definition>;
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class CollectorStatus { Ok, Cached, Failed, Skipped };
const char* StatusName(CollectorStatus s);

struct CollectorOutcome {
  std::string name;
  std::string database;  // for database-scoped collectors: where it ran
  CollectorStatus status = CollectorStatus::Failed;
  std::string detail;  // the error, or why it was skipped
  double duration_seconds = 0;
  size_t series = 0;
  std::shared_ptr<const std::vector<collectors::Family>> families;
};

struct Collection {
  bool up = false;
  std::string error;  // why the server is counted down
  bool deadline_exceeded = false;
  collectors::ServerFacts facts;
  std::vector<CollectorOutcome> collectors;
  double duration_seconds = 0;
  std::chrono::system_clock::time_point finished;
};

// Whether a target is a PostgreSQL server or a PgBouncer admin console:
// config.type, or when that is empty, pgbouncer if the DSN's dbname is.
collectors::TargetKind ResolveTargetKind(const TargetConfig& config, const ConnectionSpec& spec);

// PgBouncer's SHOW VERSION text ("PgBouncer 1.18.0") as major*10000 +
// minor*100 + patch (11800) and the version ("1.18.0"); nullopt if unreadable.
std::optional<std::pair<int, std::string>> ParsePgBouncerVersion(const std::string& text);

class Target {
 public:
  // `labels` are added to every sample of this target (e.g. target="name"
  // when one agent serves several).
  Target(TargetConfig config, ConnectionSpec spec, Labels labels, SelfMetrics& metrics);
  ~Target();  // waits for a running collection, then closes the connection
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  const TargetConfig& config() const { return config_; }
  const ConnectionSpec& spec() const { return spec_; }
  const Labels& labels() const { return labels_; }
  collectors::TargetKind kind() const { return kind_; }

  // Joins the collection in flight, or starts one, and waits for it until
  // `deadline`; past it, returns a result with up=false. Never throws.
  std::shared_ptr<const Collection> Scrape(std::shared_ptr<const Definitions> defs, Clock::time_point deadline);

  // The last finished collection (nullptr before the first).
  std::shared_ptr<const Collection> Last() const;

 private:
  struct Request {
    std::shared_ptr<const Definitions> defs;
    Clock::time_point deadline;
    std::promise<std::shared_ptr<const Collection>> promise;
  };
  struct CacheEntry {
    const collectors::Definition* definition;  // identity within `defs`
    std::shared_ptr<const Definitions> defs;   // keeps `definition` alive
    Clock::time_point at;
    CollectorOutcome outcome;
  };

  // A connection to another database of the server, for database-scoped collectors.
  struct DatabaseConnection {
    std::unique_ptr<pqxx::connection> conn;
    std::set<std::string> extensions;
    Clock::time_point last_used{};
    Clock::time_point next_attempt{};
    std::chrono::milliseconds backoff{0};
    std::string last_error;
  };
  // Per collector, summed over the databases it ran in this collection.
  struct Tally {
    size_t runs = 0, failures = 0, cache_hits = 0, series = 0, dropped_duplicates = 0, dropped_limit = 0;
    double seconds = 0;
  };

  void WorkerLoop();
  // The pgbackrest outcome for this collection; waits until `until` for a run in flight.
  CollectorOutcome BackrestOutcome(Clock::time_point until);
  std::shared_ptr<const Collection> Collect(const std::shared_ptr<const Definitions>& defs, Clock::time_point deadline);
  bool EnsureConnected(std::string& error);
  bool ReadFacts(collectors::ServerFacts& facts, Clock::time_point deadline, std::string& error);
  void Discover(Clock::time_point deadline);
  DatabaseConnection* OpenDatabase(const std::string& db, Clock::time_point deadline, std::string& error);
  void CloseDatabase(const std::string& db);
  // Whether this collection may statvfs the server's paths (see FilesystemVisibility); asks the server once.
  const collectors::FilesystemAccess& FilesystemAccessFor(pqxx::connection_base& conn, Clock::time_point deadline);
  // Runs a collector with a timeout and labels; resets its connection when lost.
  using RunFn = std::function<collectors::CollectorRun(collectors::Millis, const Labels&)>;
  // Runs (or serves from cache) one collector in one database; `connected`
  // false means its connection was lost earlier in this scrape.
  CollectorOutcome RunOne(const std::shared_ptr<const Definitions>& defs, const collectors::PlannedCollector& p,
                          const std::string& database, bool connected, const RunFn& run, Clock::time_point deadline,
                          Tally& tally);
  // RunOne on a PostgreSQL connection.
  CollectorOutcome RunOnPostgres(const std::shared_ptr<const Definitions>& defs, const collectors::PlannedCollector& p,
                                 const std::string& database, std::unique_ptr<pqxx::connection>& conn,
                                 Clock::time_point deadline, Tally& tally);

  const TargetConfig config_;
  const ConnectionSpec spec_;
  const Labels labels_;
  const collectors::TargetKind kind_;
  SelfMetrics& metrics_;

  // Worker thread only. A PgBouncer target uses console_ instead of conn_.
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<collectors::ConsoleConnection> console_;
  std::string current_database_;
  Clock::time_point next_connect_attempt_{};
  std::chrono::milliseconds backoff_{0};
  std::string last_connect_error_;
  std::map<std::string, CacheEntry> cache_;              // key: collector name + '\x1f' + database
  std::map<std::string, DatabaseConnection> databases_;  // other than current_database_
  std::vector<std::string> discovered_;                  // databases from the last discovery, sorted
  Clock::time_point discovered_at_{};
  bool discovery_done_ = false;
  std::vector<std::regex> include_, exclude_;
  std::optional<collectors::FilesystemAccess> fs_access_;  // decided once per collection
  uint64_t backrest_seen_ = 0;                             // sequence of the last pgbackrest result reported

  // Runs pgbackrest info on a thread of its own; null when not configured. Declared
  // before the worker so that it outlives it.
  std::unique_ptr<BackrestCollector> backrest_;
  // logs: the server's log read as it grows; its counts live as long as this Target. Null for PgBouncer.
  std::unique_ptr<sources::LogSource> logs_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unique_ptr<Request> pending_;                                // guarded by mu_
  std::shared_future<std::shared_ptr<const Collection>> inflight_;  // guarded by mu_
  bool inflight_active_ = false;                                    // guarded by mu_
  Clock::time_point inflight_deadline_{};   // latest deadline of the in-flight collection's waiters; guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::shared_ptr<const Collection> last_;  // guarded by mu_
  std::thread worker_;                      // started by the first Scrape, under mu_
};

}  // namespace pgpulse::agent
