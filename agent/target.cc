#include "agent/target.h"

#include <pqxx/except>
#include <pqxx/result>

#include <algorithm>
#include <sstream>

#include "agent/log.h"
#include "collectors/runner.h"

namespace pgpulse::agent {

namespace {

constexpr std::chrono::milliseconds kMinBackoff{500};
constexpr std::chrono::milliseconds kMaxBackoff{10'000};
constexpr std::chrono::milliseconds kFactsTimeout{2'000};
// Below this much time left, a collector is not started: its result could not arrive in time.
constexpr std::chrono::milliseconds kMinCollectorTime{20};

std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return Redact(std::move(s));
}

std::string Ms(double seconds) {
  std::ostringstream ss;
  ss << static_cast<long long>(seconds * 1000 + 0.5);
  return ss.str();
}

}  // namespace

const char* StatusName(CollectorStatus s) {
  switch (s) {
    case CollectorStatus::Ok: return "ok";
    case CollectorStatus::Cached: return "cached";
    case CollectorStatus::Failed: return "failed";
    case CollectorStatus::Skipped: return "skipped";
  }
  return "?";
}

Target::Target(TargetConfig config, ConnectionSpec spec, Labels labels, SelfMetrics& metrics)
    : config_(std::move(config)), spec_(std::move(spec)), labels_(std::move(labels)), metrics_(metrics) {
  worker_ = std::thread([this] { WorkerLoop(); });
}

Target::~Target() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
  if (conn_) {
    try {
      conn_->disconnect();
    } catch (...) {
    }
  }
}

std::shared_ptr<const Collection> Target::Last() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

std::shared_ptr<const Collection> Target::Scrape(std::shared_ptr<const Definitions> defs,
                                                 Clock::time_point deadline) {
  auto started = Clock::now();
  std::shared_future<std::shared_ptr<const Collection>> fut;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!inflight_active_) {
      auto req = std::make_unique<Request>();
      req->defs = std::move(defs);
      req->deadline = deadline;
      inflight_ = req->promise.get_future().share();
      inflight_active_ = true;
      pending_ = std::move(req);
      cv_.notify_all();
    }
    fut = inflight_;
  }
  std::shared_ptr<const Collection> result;
  if (fut.wait_until(deadline) == std::future_status::ready) {
    result = fut.get();
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
                      result->deadline_exceeded);
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
    std::shared_ptr<const Collection> result;
    try {
      result = Collect(req->defs, req->deadline);
    } catch (const std::exception& e) {
      // A bug, not a database error: keep serving, say so.
      auto c = std::make_shared<Collection>();
      c->error = std::string("internal error: ") + e.what();
      c->finished = std::chrono::system_clock::now();
      result = c;
      LogError("collection failed", {{"target", config_.name}, {"error", OneLine(e.what())}});
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = result;
      inflight_active_ = false;
    }
    req->promise.set_value(result);
  }
}

bool Target::EnsureConnected(std::string& error) {
  if (conn_ && conn_->is_open()) return true;
  conn_.reset();
  auto now = Clock::now();
  if (now < next_connect_attempt_) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_connect_attempt_ - now);
    error = "not reconnecting for another " + collectors::FormatDuration(wait) + "; last error: " + last_connect_error_;
    return false;
  }
  try {
    conn_ = std::make_unique<pqxx::connection>(spec_.conninfo);
    backoff_ = std::chrono::milliseconds(0);
    last_connect_error_.clear();
    LogInfo("connected", {{"target", config_.name}, {"server", spec_.display}});
    return true;
  } catch (const std::exception& e) {
    conn_.reset();
    backoff_ = backoff_.count() == 0 ? kMinBackoff : std::min(kMaxBackoff, backoff_ * 2);
    next_connect_attempt_ = Clock::now() + backoff_;
    last_connect_error_ = OneLine(e.what());
    error = "cannot connect: " + last_connect_error_;
    LogWarn("cannot connect", {{"target", config_.name}, {"server", spec_.display},
                               {"retry_in", collectors::FormatDuration(backoff_)}, {"error", last_connect_error_}});
    return false;
  }
}

bool Target::ReadFacts(collectors::ServerFacts& facts, Clock::time_point deadline, std::string& error) {
  // A connection left over from before a server restart fails here first;
  // one fresh attempt tells a restart (up) from an outage (down).
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!EnsureConnected(error)) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    try {
      pqxx::result r = collectors::RunReadOnly(
          *conn_,
          "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
          "pg_is_in_recovery(), current_database(), "
          "coalesce((SELECT string_agg(extname, ',') FROM pg_extension), '')",
          std::max(kMinCollectorTime, std::min(kFactsTimeout, left)));
      facts.version_num = r[0][0].as<int>();
      facts.version = r[0][1].c_str();
      facts.in_recovery = r[0][2].as<bool>();
      current_database_ = r[0][3].c_str();
      facts.extensions.clear();
      std::stringstream exts(r[0][4].c_str());
      for (std::string e; std::getline(exts, e, ',');) facts.extensions.insert(e);
      return true;
    } catch (const pqxx::broken_connection& e) {
      error = "connection lost: " + OneLine(e.what());
      conn_.reset();
    } catch (const std::exception& e) {
      error = OneLine(e.what());
      if (conn_ && !conn_->is_open()) conn_.reset();
      return false;
    }
  }
  return false;
}

std::shared_ptr<const Collection> Target::Collect(const std::shared_ptr<const Definitions>& defs,
                                                  Clock::time_point deadline) {
  auto start = Clock::now();
  auto c = std::make_shared<Collection>();
  std::string error;
  c->up = ReadFacts(c->facts, deadline, error);
  if (!c->up) {
    c->error = error;
    LogDebug("server down", {{"target", config_.name}, {"error", error}});
  } else {
    collectors::Plan plan = collectors::MakePlan(*defs, c->facts);
    for (const collectors::PlannedCollector& p : plan.run) {
      const collectors::Definition& def = *p.definition;
      CollectorOutcome out;
      out.name = def.name;
      auto cached = cache_.find(def.name);
      auto now = Clock::now();
      if (cached != cache_.end() && cached->second.definition == &def && now - cached->second.at < def.ttl) {
        out = cached->second.outcome;
        out.status = CollectorStatus::Cached;
        metrics_.CollectorCacheHit(config_.name, def.name, out.series);
        c->collectors.push_back(std::move(out));
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
      if (!conn_) {
        out.detail = "not run: the connection was lost earlier in this scrape";
      } else if (left < kMinCollectorTime) {
        out.detail = "not run: the scrape deadline was reached";
      } else {
        Labels extra = labels_;
        if (def.scope == collectors::Scope::Database) extra.emplace_back("datname", current_database_);
        collectors::CollectorRun run = collectors::RunCollector(*conn_, p, std::min(def.timeout, left), extra);
        out.duration_seconds = run.duration_seconds;
        if (run.connection_lost) conn_.reset();
        if (run.success) {
          out.status = CollectorStatus::Ok;
          out.series = run.mapped.series;
          out.families = std::make_shared<const std::vector<collectors::Family>>(std::move(run.mapped.families));
          if (run.mapped.dropped_duplicates || run.mapped.dropped_limit)
            LogWarn("series dropped", {{"target", config_.name}, {"collector", def.name},
                                       {"duplicates", std::to_string(run.mapped.dropped_duplicates)},
                                       {"over_limit", std::to_string(run.mapped.dropped_limit)},
                                       {"max_series", std::to_string(def.max_series)}});
        } else {
          out.detail = OneLine(run.error);
        }
        metrics_.CollectorRan(config_.name, def.name, run.success, run.duration_seconds, out.series,
                              run.mapped.dropped_duplicates, run.mapped.dropped_limit);
      }
      if (out.status == CollectorStatus::Failed) {
        if (out.detail.rfind("not run", 0) == 0)
          metrics_.CollectorRan(config_.name, def.name, false, 0, 0, 0, 0);
        LogWarn("collector failed", {{"target", config_.name}, {"collector", def.name},
                                     {"duration_ms", Ms(out.duration_seconds)}, {"error", out.detail}});
        cache_.erase(def.name);
      } else if (def.ttl.count() > 0) {
        cache_[def.name] = CacheEntry{&def, defs, Clock::now(), out};
      }
      c->collectors.push_back(std::move(out));
    }
    for (const collectors::SkippedCollector& s : plan.skipped) {
      CollectorOutcome out;
      out.name = s.definition->name;
      out.status = CollectorStatus::Skipped;
      out.detail = s.reason;
      c->collectors.push_back(std::move(out));
    }
  }
  c->duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  c->finished = std::chrono::system_clock::now();
  LogDebug("collected", {{"target", config_.name}, {"up", c->up ? "1" : "0"},
                         {"duration_ms", Ms(c->duration_seconds)}});
  return c;
}

}  // namespace pgpulse::agent
