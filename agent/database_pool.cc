#include "agent/database_pool.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>
#include <utility>

#include "agent/credentials.h"
#include "agent/log.h"
#include "collectors/text.h"

namespace pgpulse::agent {

namespace {

constexpr std::chrono::milliseconds kMinBackoff{500};
constexpr std::chrono::milliseconds kMaxBackoff{10'000};

}  // namespace

collectors::TargetKind ResolveTargetKind(const TargetConfig& config, const ConnectionSpec& spec) {
  if (config.type == "pgbouncer") return collectors::TargetKind::PgBouncer;
  if (config.type == "postgres") return collectors::TargetKind::Postgres;
  for (const auto& [key, value] : spec.options) {
    if (key == "dbname" && value == "pgbouncer") return collectors::TargetKind::PgBouncer;
  }
  return collectors::TargetKind::Postgres;
}

DatabasePool::DatabasePool(const TargetConfig& config, const ConnectionSpec& spec)
    : config_(config), spec_(spec), kind_(ResolveTargetKind(config, spec)) {
  // The config loader has already rejected invalid patterns.
  for (const auto& p : config_.databases.include) include_.emplace_back(p);
  for (const auto& p : config_.databases.exclude) exclude_.emplace_back(p);
}

DatabasePool::~DatabasePool() { Settle(true); }

std::string DatabasePool::ConninfoForNewConnection(const std::string& database,
                                                   std::optional<Clock::time_point> deadline) const {
  if (database.empty()) return spec_.conninfo;
  // A connect must end by the deadline, not connect_timeout later, or the whole collection
  // (the own database's too) is lost; libpq counts connect_timeout in whole seconds, 2 at least.
  int64_t timeout_s = 2;
  if (deadline)
    timeout_s =
        std::max<int64_t>(2, std::chrono::duration_cast<std::chrono::seconds>(*deadline - Clock::now()).count());
  for (const auto& [key, value] : spec_.options) {
    if (key == "connect_timeout") timeout_s = std::min(timeout_s, std::max<int64_t>(2, std::atoll(value.c_str())));
  }
  return spec_.ConninfoFor(database) + " connect_timeout=" + std::to_string(timeout_s);
}

bool DatabasePool::Connect(Slot& slot, const std::string& database, std::optional<Clock::time_point> deadline,
                           std::string& error) {
  const std::string where = database.empty() ? "" : "cannot connect to database " + database + ": ";
  const auto now = Clock::now();
  if (now < slot.next_attempt) {
    error = where + "not reconnecting for another " +
            collectors::FormatDuration(std::chrono::duration_cast<collectors::Millis>(slot.next_attempt - now)) +
            "; last error: " + slot.last_error;
    return false;
  }
  LogFields fields{{"target", config_.name}, {"server", spec_.display}};
  if (!database.empty()) fields.emplace_back("database", database);
  try {
    // credentials.h: the password read now (password_file, password_command), and read again once
    // when the server refuses it, so a rotated secret needs no reload.
    slot.session = ConnectWithCurrentPassword(
        config_, ConninfoForNewConnection(database, deadline), [&](const std::string& conninfo) {
          return collectors::OpenSession(kind_, conninfo,
                                         collectors::SessionOptions{config_.prepared_statements, deadline});
        });
    if (!database.empty()) slot.extensions = slot.session->ReadExtensions(CatalogTimeout(*deadline));
    slot.backoff = std::chrono::milliseconds(0);
    slot.last_error.clear();
    if (database.empty()) LogInfo("connected", fields);
    else LogDebug("connected", fields);
    return true;
  } catch (const std::exception& e) {
    slot.session.reset();
    slot.backoff = slot.backoff.count() == 0 ? kMinBackoff : std::min(kMaxBackoff, slot.backoff * 2);
    slot.next_attempt = Clock::now() + slot.backoff;
    slot.last_error = Redact(collectors::OneLine(e.what()));
    error = (database.empty() ? "cannot connect: " : where) + slot.last_error;
    fields.emplace_back("retry_in", collectors::FormatDuration(slot.backoff));
    fields.emplace_back("error", slot.last_error);
    LogWarn("cannot connect", fields);
    return false;
  }
}

bool DatabasePool::ReadFacts(collectors::ServerFacts& facts, Clock::time_point deadline, std::string& error) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!own_.session || !own_.session->usable()) {
      own_.session.reset();
      if (!Connect(own_, "", std::nullopt, error)) return false;
    }
    try {
      facts = own_.session->ReadFacts(CatalogTimeout(deadline), own_database_);
      return true;
    } catch (const collectors::SessionLost& e) {
      error = Redact(collectors::OneLine(e.what()));
      own_.session.reset();
    } catch (const std::exception& e) {
      error = Redact(collectors::OneLine(e.what()));
      return false;
    }
  }
  return false;
}

bool DatabasePool::Wanted(const std::string& database) const {
  bool in = include_.empty();
  for (const auto& re : include_) in = in || std::regex_match(database, re);
  for (const auto& re : exclude_) in = in && !std::regex_match(database, re);
  return in;
}

bool DatabasePool::Discover(Clock::time_point deadline) {
  Settle(false);
  if (!config_.databases.enabled || !own_.session || !own_.session->usable() || !own_.session->has_databases())
    return false;
  if (discovery_done_ && Clock::now() - discovered_at_ < config_.databases.refresh) return false;
  std::vector<std::string> found;
  try {
    for (std::string& name : own_.session->ListDatabases(CatalogTimeout(deadline))) {
      if (Wanted(name)) found.push_back(std::move(name));
    }
  } catch (const std::exception& e) {
    // Keep the previous list: a failed refresh must not drop every database.
    LogWarn("database discovery failed", {{"target", config_.name}, {"error", Redact(collectors::OneLine(e.what()))}});
    return false;
  }
  discovery_done_ = true;
  discovered_at_ = Clock::now();
  if (found == discovered_) return false;
  CloseGone(found);
  discovered_ = std::move(found);
  std::string list;
  for (const auto& d : discovered_) list += (list.empty() ? "" : ",") + d;
  LogInfo("databases discovered",
          {{"target", config_.name}, {"count", std::to_string(discovered_.size())}, {"databases", list}});
  return true;
}

void DatabasePool::CloseGone(const std::vector<std::string>& found) {
  for (auto it = others_.begin(); it != others_.end();) {
    if (std::binary_search(found.begin(), found.end(), it->first)) {
      ++it;
      continue;
    }
    LogInfo("database gone, closing its connection", {{"target", config_.name}, {"database", it->first}});
    it = others_.erase(it);
  }
}

std::vector<std::string> DatabasePool::Databases() const {
  if (config_.databases.enabled && discovery_done_) return discovered_;  // only ever done where has_databases()
  return {own_database_};
}

void DatabasePool::CloseLeastRecentlyUsed() {
  // The DSN's own connection counts against the limit, and so does a prefetch in flight.
  for (;;) {
    size_t open = prefetch_ ? 1 : 0;
    Slot* oldest = nullptr;
    for (auto& [name, slot] : others_) {
      if (!slot.session || !slot.session->usable()) continue;
      ++open;
      if (!oldest || slot.last_used < oldest->last_used) oldest = &slot;
    }
    if (open + 1 < config_.databases.max_connections || !oldest) return;
    oldest->session.reset();
  }
}

DatabasePool::Slot* DatabasePool::Open(const std::string& database, Clock::time_point deadline, std::string& error) {
  if (database == own_database_) return &own_;
  // The prefetch of this database is waited for; one of another is filed if it is done, else left
  // to finish (it counts against max_connections meanwhile).
  const bool prefetched = prefetch_ && prefetch_->first == database;
  if (std::optional<Prefetched> done = Settle(prefetched); prefetched && !done->connected) {
    error = done->error;  // it has just failed: its backoff is filed, no second attempt now
    return nullptr;
  }
  const auto now = Clock::now();
  auto found = others_.find(database);
  if (found != others_.end() && found->second.session && found->second.session->usable()) {
    found->second.last_used = now;
    return &found->second;
  }
  if (found == others_.end() || now >= found->second.next_attempt) CloseLeastRecentlyUsed();
  Slot& slot = others_[database];
  slot.last_used = now;
  slot.session.reset();
  return Connect(slot, database, deadline, error) ? &slot : nullptr;
}

void DatabasePool::Prefetch(const std::string& database, Clock::time_point deadline) {
  if (prefetch_ || database == own_database_ || config_.databases.max_connections < 3) return;
  Prefetched job;
  job.database = database;
  if (auto found = others_.find(database); found != others_.end()) {
    const Slot& known = found->second;
    if (known.session && known.session->usable()) return;
    if (Clock::now() < known.next_attempt) return;
    job.slot.backoff = known.backoff;  // a failure doubles it, as Open's own attempt would
  }
  // Room for it beside the own connection and the one in use (the most recently used, kept).
  CloseLeastRecentlyUsed();
  try {
    prefetch_.emplace(database, std::async(std::launch::async, [this, job = std::move(job), deadline]() mutable {
                        job.connected = Connect(job.slot, job.database, deadline, job.error);
                        return std::move(job);
                      }));
  } catch (const std::system_error&) {
    // No thread to spare: Open connects in turn, as without a prefetch.
  }
}

std::optional<DatabasePool::Prefetched> DatabasePool::Settle(bool wait) {
  if (!prefetch_) return std::nullopt;
  if (!wait && prefetch_->second.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return std::nullopt;
  Prefetched done = prefetch_->second.get();
  prefetch_.reset();
  Slot& slot = others_[done.database];
  slot.session = std::move(done.slot.session);
  slot.extensions = std::move(done.slot.extensions);
  slot.backoff = done.slot.backoff;
  slot.next_attempt = done.slot.next_attempt;
  slot.last_error = done.slot.last_error;
  slot.last_used = Clock::now();
  return done;
}

}  // namespace pgpulse::agent
