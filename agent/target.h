#pragma once
// One server the agent watches (PostgreSQL or a PgBouncer console), as a
// scheduler: the worker thread that runs its collections, the collection in
// flight that concurrent scrapes share, and the deadline. What a collection
// talks to lives elsewhere: sessions and databases in DatabasePool, cached
// results in ResultCache, sources that are not SQL in agent/sources/.
//
// Threads: HTTP threads call Scrape/Last; one worker thread per target owns
// the pool, the cache and the sources and runs collections. `mu_` guards the
// request hand-off, the collection in progress and the last result; it is
// never held while waiting on the database. Concurrent scrapes share one
// collection (singleflight).
//
// Stale-while-revalidate: a collection runs the collectors without a ttl and
// serves the others from the cache. One whose ttl expired is served stale and
// queued; after the collection has answered its scrapes, the worker refreshes
// the queue one collector at a time, and a scrape that arrives meanwhile is
// answered at once from the last results (with their age) while its own
// collection waits for the refresh in progress. A collector with a ttl that
// never ran runs after those without one and is not held to the scrape's
// deadline: a scrape that cannot wait for it serves it as pending. So the
// database still sees one collector query at a time per target, and no scrape
// waits for a refresh. Nothing runs unless a scrape asks.

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/collection.h"
#include "agent/config.h"
#include "agent/database_pool.h"
#include "agent/deadline.h"
#include "agent/dsn.h"
#include "agent/result_cache.h"
#include "agent/self_metrics.h"
#include "agent/sources/source.h"
#include "collectors/definition.h"
#include "collectors/plan.h"

namespace pgpulse::agent {

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
  collectors::TargetKind kind() const { return pool_.kind(); }

  // Joins the collection in flight, or starts one, and waits for it until
  // `deadline`; past it, returns a result with up=false. Never throws.
  std::shared_ptr<const Collection> Scrape(std::shared_ptr<const Definitions> defs, Clock::time_point deadline);

  // The last finished collection (nullptr before the first).
  std::shared_ptr<const Collection> Last() const;
  // The collection in progress as far as it got (the rest from the last one, or pending), else
  // the last finished one: what the landing page shows.
  std::shared_ptr<const Collection> Snapshot() const;

 private:
  struct Request {
    std::shared_ptr<const Definitions> defs;
    Clock::time_point deadline;
    Clock::duration budget{};  // deadline minus the time of the request: given again if it starts late
    std::promise<std::shared_ptr<const Collection>> promise;
  };
  // A collector (in a database) whose cached result expired; the definitions keep it alive.
  struct Refresh {
    std::shared_ptr<const Definitions> defs;
    collectors::PlannedCollector planned;
    std::string database;
  };
  // Per collector, summed over the databases it ran in this collection.
  struct Tally {
    size_t runs = 0, failures = 0, cache_hits = 0, series = 0, dropped_duplicates = 0, dropped_limit = 0;
    double seconds = 0;
  };
  // One collection's state on the worker thread.
  struct Walk;

  void WorkerLoop();
  std::shared_ptr<const Collection> Collect(const std::shared_ptr<const Definitions>& defs, Clock::time_point deadline);
  // The deadline of the collection in flight: a request that joins later may move it out.
  Clock::time_point LatestDeadline(Clock::time_point& deadline);
  // Runs the server-scoped (or one database's) collectors without a ttl, or with one.
  void RunServerScoped(Walk& walk, bool with_ttl);
  // Each database in turn; while one's collectors run, the next one's connection is opened.
  void RunDatabases(Walk& walk, bool with_ttl);
  void RunDatabaseScoped(Walk& walk, const std::string& database, bool with_ttl, const std::string* next);
  // Whether `def` runs in `database` in this pass (its scope and ttl, its run_in choice).
  bool RunsIn(const Walk& walk, const collectors::Definition& def, const std::string& database, bool with_ttl) const;
  // Whether this pass serves `def` in `database` from the cache: it needs no session then (the
  // extension check was made when the result was made).
  bool ServedFromCache(const collectors::Definition& def, const std::string& database, bool with_ttl) const;
  // Whether `database`'s pass runs a collector that needs a session (one not served from the cache).
  bool NeedsSession(const Walk& walk, const std::string& database, bool with_ttl) const;
  // Asks the run_in query of each planned collector that has one which databases it runs in, and
  // reports one line for each collector it keeps out of some.
  void ChooseDatabases(Walk& walk);
  // Adds an outcome to the collection in progress (scrapes past their deadline read it).
  void Add(Walk& walk, CollectorOutcome outcome);
  // What a scrape past its deadline serves: the collection in progress, the rest from the last
  // one or pending. nullptr before the server answered. Call with mu_ held.
  std::shared_ptr<const Collection> PartialLocked() const;
  // Queues a refresh of `p` in `database` unless one is queued.
  void QueueRefresh(const std::shared_ptr<const Definitions>& defs, const collectors::PlannedCollector& p,
                    const std::string& database);
  // Refreshes the queue, one collector at a time, until it is empty or a scrape is waiting.
  void RunRefreshes();
  void RunRefresh(const Refresh& r);
  void RunSources(Walk& walk);
  // Runs (or serves from the cache) one collector in one database on `session`; once more
  // if a later waiter moved the deadline out after it was cut off.
  CollectorOutcome RunWithRetry(Walk& walk, const collectors::PlannedCollector& p, const std::string& database,
                                collectors::Session* session);
  // `refresh`: run even when a stale result is cached (a queued refresh does).
  CollectorOutcome RunOne(Walk& walk, const collectors::PlannedCollector& p, const std::string& database,
                          collectors::Session* session, Clock::time_point deadline, bool refresh = false);
  // Runs `p` on `session` with `timeout`; decides filesystem access first when `p` needs it.
  collectors::CollectorRun RunOnSession(Walk& walk, const collectors::PlannedCollector& p, collectors::Session& session,
                                        collectors::Millis timeout, const Labels& extra);
  // Whether this collection may look at the server's files; asks the server (on `session`) once
  // per collection. Throws collectors::SessionLost.
  const collectors::FilesystemAccess& DecideFilesystemAccess(Walk& walk, collectors::Session& session);
  // The same for sources that are not SQL, which run after the SQL collectors; never throws.
  const collectors::FilesystemAccess& FilesystemAccessForSources(Walk& walk);
  // Where the server keeps its files, for sources; nullptr when it cannot say. Never throws.
  const collectors::ServerLocation* LocationForSources(Walk& walk);
  // Adds a finished run to its collector's tally; logs its notes and dropped series.
  void Record(const CollectorOutcome& out, const collectors::CollectorRun& run, Tally& tally);

  const TargetConfig config_;
  const ConnectionSpec spec_;
  const Labels labels_;
  SelfMetrics& metrics_;

  // Worker thread only.
  DatabasePool pool_;
  ResultCache cache_;
  std::deque<Refresh> refreshes_;
  std::set<CacheKey> queued_;  // the keys in refreshes_
  // Sources that are not SQL; they may run threads of their own, so they outlive the worker.
  std::vector<std::unique_ptr<sources::Source>> sources_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unique_ptr<Request> pending_;                                // guarded by mu_
  std::shared_future<std::shared_ptr<const Collection>> inflight_;  // guarded by mu_
  bool inflight_active_ = false;                                    // guarded by mu_
  Clock::time_point inflight_deadline_{};   // latest deadline of the in-flight collection's waiters; guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::shared_ptr<const Collection> last_;  // guarded by mu_; refreshes replace their collector's outcome
  bool refreshing_ = false;                 // the worker runs a refresh; guarded by mu_
  // The collection in progress once the server answered, and the collectors it plans; guarded by mu_.
  std::shared_ptr<Collection> progress_;
  std::vector<std::string> progress_planned_;
  std::thread worker_;  // started by the first Scrape, under mu_
};

}  // namespace pgpulse::agent
