#include "agent/target.h"

#include <malloc.h>

#include <algorithm>
#include <set>
#include <system_error>

#include "agent/log.h"
#include "agent/sources/filesystem_access.h"
#include "collectors/text.h"

namespace pgpulse::agent {

namespace {

std::string Ms(double seconds) { return std::to_string(static_cast<long long>(seconds * 1000 + 0.5)); }

CollectorOutcome Outcome(const std::string& name, const std::string& database, CollectorStatus status,
                         std::string detail) {
  CollectorOutcome out;
  out.name = name;
  out.database = database;
  out.status = status;
  out.detail = std::move(detail);
  return out;
}

}  // namespace

// One collection's state on the worker thread.
struct Target::Walk {
  std::shared_ptr<const Definitions> defs;
  Clock::time_point deadline;  // moves out when a later waiter joins (LatestDeadline)
  Collection& collection;
  collectors::Plan plan;
  std::map<std::string, Tally> tallies;
  std::optional<collectors::FilesystemAccess> filesystem;  // decided once per collection
  std::optional<collectors::ServerLocation> location;      // asked once per collection
  // Collector -> the databases its run_in query chose; a collector not here runs in every database.
  std::map<std::string, std::set<std::string>> chosen;
};

Target::Target(TargetConfig config, ConnectionSpec spec, Labels labels, SelfMetrics& metrics)
    : config_(std::move(config)),
      spec_(std::move(spec)),
      labels_(std::move(labels)),
      metrics_(metrics),
      pool_(config_, spec_),
      sources_(sources::MakeSources(config_, labels_)) {}

Target::~Target() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

std::shared_ptr<const Collection> Target::Last() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

std::shared_ptr<const Collection> Target::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto partial = PartialLocked()) return partial;
  return last_;
}

std::shared_ptr<const Collection> Target::Scrape(std::shared_ptr<const Definitions> defs, Clock::time_point deadline) {
  auto started = Clock::now();
  std::shared_future<std::shared_ptr<const Collection>> fut;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Started at the first scrape, so that `pgpulse check` (no scrape) needs no thread per target.
    if (!worker_.joinable()) {
      try {
        worker_ = std::thread([this] { WorkerLoop(); });
      } catch (const std::system_error& e) {
        auto c = std::make_shared<Collection>();
        c->error = std::string("cannot start a worker thread: ") + e.what();
        c->finished = std::chrono::system_clock::now();
        return c;
      }
    }
    const bool refreshing = refreshing_ && last_;
    if (inflight_active_) {
      // Joining a collection in flight: it runs until the latest deadline of those waiting.
      inflight_deadline_ = std::max(inflight_deadline_, deadline);
    } else {
      inflight_deadline_ = deadline;
      auto req = std::make_unique<Request>();
      req->defs = std::move(defs);
      req->deadline = deadline;
      req->budget = deadline - started;
      inflight_ = req->promise.get_future().share();
      inflight_active_ = true;
      pending_ = std::move(req);
      cv_.notify_all();
    }
    fut = inflight_;
    if (refreshing) {
      // The worker is refreshing a stale result: this scrape is answered now from the last
      // results, each with its age; its collection runs when that refresh ends, for the next.
      std::shared_ptr<const Collection> result = last_;
      metrics_.ScrapeDone(config_.name, std::chrono::duration<double>(Clock::now() - started).count(),
                          std::chrono::duration<double>(deadline - started).count(), false);
      return result;
    }
  }
  std::shared_ptr<const Collection> result;
  if (fut.wait_until(deadline) == std::future_status::ready) {
    result = fut.get();
  } else if (auto partial = [&] {
               std::lock_guard<std::mutex> lock(mu_);
               return PartialLocked();
             }()) {
    // The server answered; what the deadline cut off goes on in the background.
    result = partial;
  } else {
    auto c = std::make_shared<Collection>();
    c->up = false;
    c->deadline_exceeded = true;
    c->error = "the server did not answer before the scrape deadline";
    c->finished = std::chrono::system_clock::now();
    result = c;
    LogWarn("scrape deadline exceeded", {{"target", config_.name}, {"error", c->error}});
  }
  metrics_.ScrapeDone(config_.name, std::chrono::duration<double>(Clock::now() - started).count(),
                      std::chrono::duration<double>(deadline - started).count(), result->deadline_exceeded);
  return result;
}

void Target::WorkerLoop() {
  for (;;) {
    std::unique_ptr<Request> req;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || pending_; });
      if (stopping_ && !pending_) return;
      req = std::move(pending_);
    }
    // A request that waited for a refresh gets its whole time budget from now.
    req->deadline = std::max(req->deadline, Clock::now() + req->budget);
    {
      std::lock_guard<std::mutex> lock(mu_);
      inflight_deadline_ = std::max(inflight_deadline_, req->deadline);
    }
    std::shared_ptr<const Collection> result;
    try {
      result = Collect(req->defs, req->deadline);
    } catch (const std::exception& e) {
      // A bug, not a database error: keep serving, say so.
      auto c = std::make_shared<Collection>();
      c->error = std::string("internal error: ") + e.what();
      c->finished = std::chrono::system_clock::now();
      result = c;
      LogError("collection failed", {{"target", config_.name}, {"error", Redact(collectors::OneLine(e.what()))}});
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = result;
      inflight_active_ = false;
      progress_.reset();
      progress_planned_.clear();
    }
    req->promise.set_value(result);
    // What a collection read and mapped and then freed lies in holes between the results it
    // keeps; malloc keeps those pages resident until asked. Given back after each collection
    // and refresh, they are not counted again at the next one's peak.
    malloc_trim(0);
    RunRefreshes();
  }
}

Clock::time_point Target::LatestDeadline(Clock::time_point& deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  deadline = std::max(deadline, inflight_deadline_);
  return deadline;
}

std::shared_ptr<const Collection> Target::Collect(const std::shared_ptr<const Definitions>& defs,
                                                  Clock::time_point deadline) {
  const auto start = Clock::now();
  auto c = std::make_shared<Collection>();
  Walk walk{defs, deadline, *c, {}, {}, {}, {}, {}};
  // Sources that are not SQL run beside the SQL collectors.
  for (auto& source : sources_) source->Start();
  std::string error;
  c->up = pool_.ReadFacts(c->facts, LatestDeadline(walk.deadline), error);
  if (!c->up) {
    c->error = error;
    LogDebug("server down", {{"target", config_.name}, {"error", error}});
  } else {
    walk.plan = collectors::MakePlan(*defs, c->facts);
    {
      std::lock_guard<std::mutex> lock(mu_);
      progress_ = c;
      for (const collectors::PlannedCollector& p : walk.plan.run) progress_planned_.push_back(p.definition->name);
    }
    // Refreshes queued for definitions a reload has replaced are of no use.
    refreshes_.erase(std::remove_if(refreshes_.begin(), refreshes_.end(),
                                    [&](const Refresh& r) {
                                      if (r.defs == defs) return false;
                                      queued_.erase(CacheKey{r.planned.definition->name, r.database});
                                      return true;
                                    }),
                     refreshes_.end());
    // Collectors without a ttl first: they are what a scrape waits for. Then those with one,
    // mostly served from the cache; one that never ran may outlast the scrape (pending).
    RunServerScoped(walk, false);
    if (pool_.Discover(LatestDeadline(walk.deadline))) cache_.KeepDatabases(pool_.Databases());
    ChooseDatabases(walk);
    RunDatabases(walk, false);
    RunServerScoped(walk, true);
    RunDatabases(walk, true);
    for (const auto& [name, t] : walk.tallies)
      metrics_.CollectorDone(config_.name, name, t.runs, t.failures, t.cache_hits, t.seconds, t.series,
                             t.dropped_duplicates, t.dropped_limit);
    for (const collectors::SkippedCollector& s : walk.plan.skipped)
      Add(walk, Outcome(s.definition->name, "", CollectorStatus::Skipped, s.reason));
  }
  RunSources(walk);
  {
    // Done: scrapes now wait for the result instead of reading it in progress.
    std::lock_guard<std::mutex> lock(mu_);
    progress_.reset();
    progress_planned_.clear();
  }
  c->duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  c->finished = std::chrono::system_clock::now();
  LogDebug("collected",
           {{"target", config_.name}, {"up", c->up ? "1" : "0"}, {"duration_ms", Ms(c->duration_seconds)}});
  return c;
}

void Target::RunServerScoped(Walk& walk, bool with_ttl) {
  for (const collectors::PlannedCollector& p : walk.plan.run) {
    if (p.definition->scope == collectors::Scope::Server && (p.definition->ttl.count() > 0) == with_ttl)
      Add(walk, RunWithRetry(walk, p, "", pool_.own()));
  }
}

void Target::RunDatabases(Walk& walk, bool with_ttl) {
  const std::vector<std::string> databases = pool_.Databases();
  for (size_t i = 0; i < databases.size(); ++i)
    RunDatabaseScoped(walk, databases[i], with_ttl, i + 1 < databases.size() ? &databases[i + 1] : nullptr);
}

bool Target::RunsIn(const Walk& walk, const collectors::Definition& def, const std::string& database,
                    bool with_ttl) const {
  if (def.scope != collectors::Scope::Database || (def.ttl.count() > 0) != with_ttl) return false;
  auto chosen = walk.chosen.find(def.name);
  return chosen == walk.chosen.end() || chosen->second.count(database) > 0;
}

bool Target::ServedFromCache(const collectors::Definition& def, const std::string& database, bool with_ttl) const {
  return with_ttl && cache_.Find(def, database).outcome;
}

bool Target::NeedsSession(const Walk& walk, const std::string& database, bool with_ttl) const {
  for (const collectors::PlannedCollector& p : walk.plan.run) {
    if (RunsIn(walk, *p.definition, database, with_ttl) && !ServedFromCache(*p.definition, database, with_ttl))
      return true;
  }
  return false;
}

void Target::RunDatabaseScoped(Walk& walk, const std::string& database, bool with_ttl, const std::string* next) {
  std::string error;
  DatabasePool::Slot* slot = nullptr;
  bool opened = false;
  for (const collectors::PlannedCollector& p : walk.plan.run) {
    const collectors::Definition& def = *p.definition;
    if (!RunsIn(walk, def, database, with_ttl)) continue;
    if (ServedFromCache(def, database, with_ttl)) {
      Add(walk, RunWithRetry(walk, p, database, nullptr));
      continue;
    }
    if (!opened) {
      const Clock::time_point deadline = LatestDeadline(walk.deadline);
      slot = pool_.Open(database, deadline, error);
      opened = true;
      if (slot && next && TimeLeft(deadline) >= kMinCollectorTime && NeedsSession(walk, *next, with_ttl))
        pool_.Prefetch(*next, deadline);
    }
    const bool own = database == pool_.own_database();
    const std::set<std::string>& extensions = own || !slot ? walk.collection.facts.extensions : slot->extensions;
    if (def.required_extension && slot && !extensions.count(*def.required_extension)) {
      Add(walk, Outcome(def.name, database, CollectorStatus::Skipped,
                        "extension " + *def.required_extension + " is not installed in this database"));
    } else if (!slot) {
      walk.tallies[def.name].failures++;
      Add(walk, Outcome(def.name, database, CollectorStatus::Failed, error));
    } else {
      Add(walk, RunWithRetry(walk, p, database, slot->session.get()));
    }
  }
}

void Target::ChooseDatabases(Walk& walk) {
  collectors::Session* own = pool_.own();
  const std::vector<std::string>& databases = pool_.Databases();
  for (const collectors::PlannedCollector& p : walk.plan.run) {
    const collectors::Definition& def = *p.definition;
    if (def.scope != collectors::Scope::Database || def.run_in_sql.empty()) continue;
    // Without an answer the collector runs everywhere, as if it had no run_in: nothing is lost. Past
    // the scrape's deadline it is not asked: the collector is not run anywhere then, and says so.
    const Clock::time_point deadline = LatestDeadline(walk.deadline);
    if (!own || !own->usable() || TimeLeft(deadline) < kMinCollectorTime) continue;
    std::set<std::string> chosen;
    try {
      for (std::string& name : own->ListNames(def.run_in_sql, std::min(def.timeout, CatalogTimeout(deadline))))
        chosen.insert(std::move(name));
    } catch (const std::exception& e) {
      const std::string error = Redact(collectors::OneLine(e.what()));
      LogWarn("run_in query failed: the collector runs in every database",
              {{"target", config_.name}, {"collector", def.name}, {"error", error}});
      walk.tallies[def.name].failures++;
      Add(walk, Outcome(def.name, "", CollectorStatus::Failed,
                        "its run_in query failed, so it runs in every database: " + error));
      continue;
    }
    size_t left_out = 0;
    for (const std::string& db : databases) left_out += chosen.count(db) ? 0 : 1;
    walk.chosen[def.name] = std::move(chosen);
    if (left_out == 0) continue;
    // Counted like a run, so that its success and series gauges stay current when it runs nowhere.
    walk.tallies.try_emplace(def.name);
    Add(walk, Outcome(def.name, "", CollectorStatus::Skipped,
                      "runs only where its run_in query finds something to report: in " +
                          std::to_string(databases.size() - left_out) + " of " + std::to_string(databases.size()) +
                          " databases this time"));
  }
}

void Target::Add(Walk& walk, CollectorOutcome outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  walk.collection.collectors.push_back(std::move(outcome));
}

std::shared_ptr<const Collection> Target::PartialLocked() const {
  if (!progress_) return nullptr;
  auto c = std::make_shared<Collection>(*progress_);
  c->partial = true;
  c->finished = std::chrono::system_clock::now();
  std::set<CacheKey> have;
  std::set<std::string> names;
  for (const CollectorOutcome& o : c->collectors) {
    have.insert(CacheKey{o.name, o.database});
    names.insert(o.name);
  }
  if (last_) {
    for (const CollectorOutcome& o : last_->collectors) {
      if (!have.insert(CacheKey{o.name, o.database}).second) continue;
      c->collectors.push_back(o);
      names.insert(o.name);
    }
  }
  for (const std::string& name : progress_planned_) {
    if (names.insert(name).second)
      c->collectors.push_back(Outcome(name, "", CollectorStatus::Pending,
                                      "not collected yet: its first run goes on after this scrape's deadline"));
  }
  return c;
}

void Target::QueueRefresh(const std::shared_ptr<const Definitions>& defs, const collectors::PlannedCollector& p,
                          const std::string& database) {
  if (queued_.insert(CacheKey{p.definition->name, database}).second) refreshes_.push_back(Refresh{defs, p, database});
}

void Target::RunRefreshes() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      refreshing_ = !stopping_ && !pending_ && !refreshes_.empty() && last_ && last_->up;
      if (!refreshing_) return;
    }
    Refresh r = std::move(refreshes_.front());
    refreshes_.pop_front();
    queued_.erase(CacheKey{r.planned.definition->name, r.database});
    RunRefresh(r);
    malloc_trim(0);
  }
}

void Target::RunRefresh(const Refresh& r) {
  const collectors::Definition& def = *r.planned.definition;
  const Clock::time_point deadline = Clock::now() + def.timeout;
  Collection scratch;
  Walk walk{r.defs, deadline, scratch, {}, {}, {}, {}, {}};
  CollectorOutcome out;
  std::string error;
  if (r.database.empty()) {
    out = RunOne(walk, r.planned, "", pool_.own(), deadline, true);
  } else if (DatabasePool::Slot* slot = pool_.Open(r.database, deadline, error)) {
    out = RunOne(walk, r.planned, r.database, slot->session.get(), deadline, true);
  } else {
    walk.tallies[def.name].failures++;
    out = Outcome(def.name, r.database, CollectorStatus::Failed, error);
    cache_.Forget(def.name, r.database);
  }
  for (const auto& [name, t] : walk.tallies)
    metrics_.CollectorDone(config_.name, name, t.runs, t.failures, t.cache_hits, t.seconds, t.series,
                           t.dropped_duplicates, t.dropped_limit);
  // The next scrapes serve the refreshed result from the cache; those answered from the last
  // results in the meantime see it there.
  std::lock_guard<std::mutex> lock(mu_);
  if (!last_) return;
  auto next = std::make_shared<Collection>(*last_);
  for (CollectorOutcome& o : next->collectors) {
    if (o.name == out.name && o.database == out.database) o = out;
  }
  last_ = std::move(next);
}

void Target::RunSources(Walk& walk) {
  const sources::SourceContext context{
      config_, labels_, walk.collection.up ? &walk.collection.facts : nullptr,
      [&]() -> const collectors::FilesystemAccess& { return FilesystemAccessForSources(walk); },
      [&]() -> const collectors::ServerLocation* { return LocationForSources(walk); }};
  for (auto& source : sources_) {
    sources::SourceOutcome s = source->Collect(context, LatestDeadline(walk.deadline));
    if (!s.report) continue;
    // A skipped source (the reason on the landing page) counts as no run, failure or cache hit.
    if (s.outcome.status != CollectorStatus::Skipped) {
      const bool failed = s.outcome.status == CollectorStatus::Failed;
      metrics_.CollectorDone(config_.name, s.outcome.name, s.ran ? 1 : 0, failed ? 1 : 0, s.ran || failed ? 0 : 1,
                             s.outcome.duration_seconds, s.outcome.series, 0, 0);
    }
    Add(walk, std::move(s.outcome));
  }
}

CollectorOutcome Target::RunWithRetry(Walk& walk, const collectors::PlannedCollector& p, const std::string& database,
                                      collectors::Session* session) {
  // A collector with a ttl is not held to the scrape's deadline: when it has to run (it never
  // did), a scrape that cannot wait serves it as pending while it goes on.
  if (p.definition->ttl.count() > 0) return RunOne(walk, p, database, session, Clock::now() + p.definition->timeout);
  // A collector cut off by the deadline it started with runs again if a later waiter moved
  // the deadline out since (its statement timeout was fixed when it started).
  const Clock::time_point used = LatestDeadline(walk.deadline);
  CollectorOutcome o = RunOne(walk, p, database, session, used);
  if (o.status == CollectorStatus::Failed && LatestDeadline(walk.deadline) > used + kMinCollectorTime)
    o = RunOne(walk, p, database, session, walk.deadline);
  return o;
}

CollectorOutcome Target::RunOne(Walk& walk, const collectors::PlannedCollector& p, const std::string& database,
                                collectors::Session* session, Clock::time_point deadline, bool refresh) {
  const collectors::Definition& def = *p.definition;
  Tally& tally = walk.tallies[def.name];
  const ResultCache::Hit hit = cache_.Find(def, database);
  if (hit.outcome && (hit.fresh || !refresh)) {
    // Within its ttl, or stale: served now, refreshed after this collection has answered.
    if (!hit.fresh) QueueRefresh(walk.defs, p, database);
    CollectorOutcome out = *hit.outcome;
    out.status = CollectorStatus::Cached;
    tally.cache_hits++;
    tally.series += out.series;
    return out;
  }
  CollectorOutcome out = Outcome(def.name, database, CollectorStatus::Failed, "");
  const collectors::Millis left = TimeLeft(deadline);
  if (!session || !session->usable()) {
    out.detail = "not run: the connection was lost earlier in this scrape";
  } else if (left < kMinCollectorTime) {
    out.detail = "not run: the scrape deadline was reached";
  } else {
    Labels extra = labels_;
    if (def.scope == collectors::Scope::Database) extra.emplace_back("datname", database);
    collectors::CollectorRun run = RunOnSession(walk, p, *session, std::min(def.timeout, left), extra);
    out.duration_seconds = run.duration_seconds;
    out.collected_at = std::chrono::system_clock::now();
    if (run.success) {
      out.status = CollectorStatus::Ok;
      out.series = run.mapped.series;
      out.families = std::make_shared<const std::vector<collectors::Family>>(std::move(run.mapped.families));
      for (const std::string& note : run.notes) out.detail += (out.detail.empty() ? "" : "; ") + note;
    } else {
      out.detail = Redact(collectors::OneLine(run.error));
    }
    Record(out, run, tally);
  }
  if (out.status == CollectorStatus::Failed) {
    tally.failures++;
    LogWarn("collector failed", {{"target", config_.name},
                                 {"collector", def.name},
                                 {"database", database},
                                 {"duration_ms", Ms(out.duration_seconds)},
                                 {"error", out.detail}});
    cache_.Forget(def.name, database);
  } else {
    cache_.Store(walk.defs, def, out);
  }
  return out;
}

void Target::Record(const CollectorOutcome& out, const collectors::CollectorRun& run, Tally& tally) {
  tally.seconds += run.duration_seconds;
  tally.runs++;
  if (!run.success) return;
  for (const std::string& note : run.notes)
    LogDebug("collector note", {{"target", config_.name}, {"collector", out.name}, {"note", note}});
  tally.series += out.series;
  tally.dropped_duplicates += run.mapped.dropped_duplicates;
  tally.dropped_limit += run.mapped.dropped_limit;
  if (run.mapped.dropped_duplicates || run.mapped.dropped_limit)
    LogDebug("series dropped", {{"target", config_.name},
                                {"collector", out.name},
                                {"database", out.database},
                                {"duplicates", std::to_string(run.mapped.dropped_duplicates)},
                                {"over_limit", std::to_string(run.mapped.dropped_limit)}});
}

collectors::CollectorRun Target::RunOnSession(Walk& walk, const collectors::PlannedCollector& p,
                                              collectors::Session& session, collectors::Millis timeout,
                                              const Labels& extra) {
  if (p.definition->filesystem_column.empty()) return session.Run(p, timeout, extra, {});
  try {
    return session.Run(p, timeout, extra, DecideFilesystemAccess(walk, session));
  } catch (const collectors::SessionLost& e) {
    collectors::CollectorRun run;
    run.connection_lost = true;
    run.error = e.what();
    return run;
  }
}

const collectors::FilesystemAccess& Target::DecideFilesystemAccess(Walk& walk, collectors::Session& session) {
  if (walk.filesystem) return *walk.filesystem;
  walk.filesystem = sources::FilesystemAccessFor(config_, [&] {
    if (!walk.location) walk.location = session.ReadLocation(CatalogTimeout(LatestDeadline(walk.deadline)));
    return *walk.location;
  });
  return *walk.filesystem;
}

const collectors::FilesystemAccess& Target::FilesystemAccessForSources(Walk& walk) {
  collectors::Session* session = pool_.own();
  try {
    if (walk.collection.up && session && session->usable()) return DecideFilesystemAccess(walk, *session);
  } catch (const collectors::SessionLost&) {
  }
  if (!walk.filesystem) {
    walk.filesystem.emplace();
    walk.filesystem->denied_reason = "error";
    walk.filesystem->denied_detail = "filesystem not looked at: the server did not answer";
  }
  return *walk.filesystem;
}

const collectors::ServerLocation* Target::LocationForSources(Walk& walk) {
  collectors::Session* session = pool_.own();
  if (!walk.location && walk.collection.up && session && session->usable() && session->has_databases()) {
    try {
      walk.location = session->ReadLocation(CatalogTimeout(LatestDeadline(walk.deadline)));
    } catch (const std::exception& e) {
      LogDebug("server location unknown", {{"target", config_.name}, {"error", Redact(collectors::OneLine(e.what()))}});
    }
  }
  return walk.location ? &*walk.location : nullptr;
}

}  // namespace pgpulse::agent
