#include "agent/target.h"

#include <pqxx/except>
#include <pqxx/result>

#include <algorithm>
#include <system_error>
#include <regex>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <poll.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "agent/log.h"
#include "agent/sources/logs.h"  // logs
#include "collectors/runner.h"

namespace pgpulse::agent {

namespace {

// Label values must be UTF-8: the server converts names and texts from the database's
// encoding. Not from SQL_ASCII (where it would refuse every byte >= 0x80 and fail the
// query): those come as they are, and collectors::AppendLabel replaces what is invalid.
// Whether a connection with `conninfo` can be made before `deadline`: libpq's own connect_timeout
// counts whole seconds, 2 at least, so a connect made with little time left could overrun the
// scrape. Driven with PQconnectPoll and poll(2), this attempt ends by the deadline; on success
// it is closed again, and the caller's real connect meets a server that just answered.
bool ConnectsBefore(const std::string& conninfo, Clock::time_point deadline, std::string& error) {
  PGconn* conn = PQconnectStart(conninfo.c_str());
  if (!conn) {
    error = "out of memory";
    return false;
  }
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK && status != PGRES_POLLING_FAILED && PQstatus(conn) != CONNECTION_BAD) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      error = "connecting did not finish before the scrape deadline";
      PQfinish(conn);
      return false;
    }
    pollfd p{PQsocket(conn), static_cast<short>(status == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
    if (p.fd < 0) break;
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
    if (p.revents == 0) continue;
    status = PQconnectPoll(conn);
  }
  const bool ok = status == PGRES_POLLING_OK && PQstatus(conn) == CONNECTION_OK;
  if (!ok && error.empty()) error = PQerrorMessage(conn);
  PQfinish(conn);
  return ok;
}

std::unique_ptr<pqxx::connection> ConnectAskingForUtf8(const std::string& conninfo) {
  auto conn = std::make_unique<pqxx::connection>(conninfo);
  if (conn->get_client_encoding() != "SQL_ASCII") conn->set_client_encoding("UTF8");
  return conn;
}

constexpr std::chrono::milliseconds kMinBackoff{500};
constexpr std::chrono::milliseconds kMaxBackoff{10'000};
constexpr std::chrono::milliseconds kFactsTimeout{2'000};
// Below this much time left, a collector is not started: its result could not arrive in time.
constexpr std::chrono::milliseconds kMinCollectorTime{20};
// What a collection keeps back from its deadline when it waits for pgbackrest info.
constexpr std::chrono::milliseconds kBackrestMargin{100};

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

collectors::TargetKind ResolveTargetKind(const TargetConfig& config, const ConnectionSpec& spec) {
  if (config.type == "pgbouncer") return collectors::TargetKind::PgBouncer;
  if (config.type == "postgres") return collectors::TargetKind::Postgres;
  for (const auto& [key, value] : spec.options) {
    if (key == "dbname" && value == "pgbouncer") return collectors::TargetKind::PgBouncer;
  }
  return collectors::TargetKind::Postgres;
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
    : config_(std::move(config)),
      spec_(std::move(spec)),
      labels_(std::move(labels)),
      kind_(ResolveTargetKind(config_, spec_)),
      metrics_(metrics) {
  // The config loader has already rejected invalid patterns.
  for (const auto& p : config_.databases.include) include_.emplace_back(p);
  for (const auto& p : config_.databases.exclude) exclude_.emplace_back(p);
  if (config_.pgbackrest.enabled())
    backrest_ = std::make_unique<BackrestCollector>(config_.name, config_.pgbackrest, labels_);
  if (kind_ == collectors::TargetKind::Postgres) logs_ = std::make_unique<sources::LogSource>(config_.logs, labels_);
}

Target::~Target() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (auto& [name, db] : databases_) {
    try {
      if (db.conn) db.conn->disconnect();
    } catch (...) {
    }
  }
  if (conn_) {
    try {
      conn_->disconnect();
    } catch (...) {
    }
  }
  console_.reset();
}

std::shared_ptr<const Collection> Target::Last() const {
  std::lock_guard<std::mutex> lock(mu_);
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
    if (inflight_active_) {
      // Joining a collection in flight: it runs until the latest deadline of those waiting.
      inflight_deadline_ = std::max(inflight_deadline_, deadline);
    } else {
      inflight_deadline_ = deadline;
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
  const bool bouncer = kind_ == collectors::TargetKind::PgBouncer;
  if (bouncer ? console_ && console_->usable() : conn_ && conn_->is_open()) return true;
  conn_.reset();
  console_.reset();
  auto now = Clock::now();
  if (now < next_connect_attempt_) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_connect_attempt_ - now);
    error = "not reconnecting for another " + collectors::FormatDuration(wait) + "; last error: " + last_connect_error_;
    return false;
  }
  try {
    if (bouncer) {
      std::string why;
      console_ = collectors::ConsoleConnection::Open(spec_.conninfo, why);
      if (!console_) throw std::runtime_error(why);
    } else {
      conn_ = ConnectAskingForUtf8(spec_.conninfo);
    }
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
    LogWarn("cannot connect", {{"target", config_.name},
                               {"server", spec_.display},
                               {"retry_in", collectors::FormatDuration(backoff_)},
                               {"error", last_connect_error_}});
    return false;
  }
}

bool Target::ReadFacts(collectors::ServerFacts& facts, Clock::time_point deadline, std::string& error) {
  // A connection left over from before a server restart fails here first;
  // one fresh attempt tells a restart (up) from an outage (down).
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!EnsureConnected(error)) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (kind_ == collectors::TargetKind::PgBouncer) {
      bool lost = false;
      auto r = console_->Exec("SHOW VERSION", std::max(kMinCollectorTime, std::min(kFactsTimeout, left)), error, lost);
      if (!r) {
        error = OneLine(error);
        if (lost) console_.reset();
        // A console that hung once would hang the retry too.
        if (!lost || error.find("timed out") != std::string::npos) return false;
        continue;
      }
      std::string text = r->Text(0, 0);
      auto v = ParsePgBouncerVersion(text);
      if (!v) {
        error = "SHOW VERSION answered '" + OneLine(text.substr(0, 80)) + "', which names no PgBouncer version";
        return false;
      }
      facts.kind = collectors::TargetKind::PgBouncer;
      facts.version_num = v->first;
      facts.version = v->second;
      current_database_ = "pgbouncer";
      return true;
    }
    try {
      pqxx::result r = collectors::RunReadOnly(
          *conn_,
          "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
          "pg_is_in_recovery(), current_database(), "
          "coalesce((SELECT string_agg(extname || '=' || extversion, ',') FROM pg_extension), ''), current_user, "
          // pg_has_role(..., 'USAGE'): has the role's privileges (inherited), true for superusers.
          "coalesce((SELECT string_agg(rolname, ',') FROM pg_roles "
          "          WHERE rolname LIKE 'pg\\_%' AND pg_has_role(current_user, oid, 'USAGE')), '')",
          std::max(kMinCollectorTime, std::min(kFactsTimeout, left)));
      facts.version_num = r[0][0].as<int>();
      facts.version = r[0][1].c_str();
      facts.in_recovery = r[0][2].as<bool>();
      current_database_ = r[0][3].c_str();
      facts.extensions.clear();
      facts.extension_versions.clear();
      std::stringstream exts(r[0][4].c_str());
      for (std::string e; std::getline(exts, e, ',');) {
        const size_t eq = e.find('=');
        facts.extensions.insert(e.substr(0, eq));
        if (eq != std::string::npos) facts.extension_versions[e.substr(0, eq)] = e.substr(eq + 1);
      }
      facts.user = r[0][5].c_str();
      facts.privileges.clear();
      std::stringstream privs(r[0][6].c_str());
      for (std::string p; std::getline(privs, p, ',');) facts.privileges.insert(p);
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

void Target::Discover(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  std::vector<std::string> found;
  try {
    pqxx::result r = collectors::RunReadOnly(
        *conn_, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        std::max(kMinCollectorTime, std::min(kFactsTimeout, left)));
    for (const auto& row : r) {
      std::string name = row[0].c_str();
      bool in = include_.empty();
      for (const auto& re : include_) in = in || std::regex_match(name, re);
      for (const auto& re : exclude_) in = in && !std::regex_match(name, re);
      if (in) found.push_back(name);
    }
  } catch (const std::exception& e) {
    // Keep the previous list: a failed refresh must not drop every database.
    LogWarn("database discovery failed", {{"target", config_.name}, {"error", OneLine(e.what())}});
    if (conn_ && !conn_->is_open()) conn_.reset();
    return;
  }
  discovery_done_ = true;
  discovered_at_ = Clock::now();
  if (found == discovered_) return;
  for (auto it = databases_.begin(); it != databases_.end();) {
    bool kept = std::binary_search(found.begin(), found.end(), it->first);
    if (kept) {
      ++it;
      continue;
    }
    LogInfo("database gone, closing its connection", {{"target", config_.name}, {"database", it->first}});
    std::string gone = it->first;
    ++it;
    CloseDatabase(gone);
  }
  for (auto it = cache_.begin(); it != cache_.end();) {
    std::string db = it->first.substr(it->first.find('\x1f') + 1);
    if (!db.empty() && !std::binary_search(found.begin(), found.end(), db)) it = cache_.erase(it);
    else ++it;
  }
  discovered_ = std::move(found);
  std::string list;
  for (const auto& d : discovered_) list += (list.empty() ? "" : ",") + d;
  LogInfo("databases discovered",
          {{"target", config_.name}, {"count", std::to_string(discovered_.size())}, {"databases", list}});
}

void Target::CloseDatabase(const std::string& db) {
  auto it = databases_.find(db);
  if (it == databases_.end()) return;
  try {
    if (it->second.conn) it->second.conn->disconnect();
  } catch (...) {
  }
  databases_.erase(it);
}

Target::DatabaseConnection* Target::OpenDatabase(const std::string& db, Clock::time_point deadline,
                                                 std::string& error) {
  auto now = Clock::now();
  auto found = databases_.find(db);
  if (found != databases_.end() && found->second.conn && found->second.conn->is_open()) {
    found->second.last_used = now;
    return &found->second;
  }
  if (found != databases_.end() && now < found->second.next_attempt) {
    error = "cannot connect to database " + db + ": " + found->second.last_error;
    return nullptr;
  }
  // The DSN's own connection counts against the limit; close the least recently used others.
  for (;;) {
    size_t open = 0;
    const std::string* oldest = nullptr;
    Clock::time_point oldest_use = Clock::time_point::max();
    for (auto& [name, d] : databases_) {
      if (!d.conn) continue;
      ++open;
      if (d.last_used < oldest_use) {
        oldest_use = d.last_used;
        oldest = &name;
      }
    }
    if (open + 1 < config_.databases.max_connections || !oldest) break;
    databases_[*oldest].conn.reset();
  }
  // A connect must end by the deadline, not connect_timeout later, or the whole collection
  // (the main database's too) is lost; libpq counts connect_timeout in whole seconds, 2 at least.
  int64_t timeout_s = std::max<int64_t>(2, std::chrono::duration_cast<std::chrono::seconds>(deadline - now).count());
  for (const auto& [key, value] : spec_.options) {
    if (key == "connect_timeout") timeout_s = std::min(timeout_s, std::max<int64_t>(2, std::atoll(value.c_str())));
  }
  const std::string conninfo = spec_.ConninfoFor(db) + " connect_timeout=" + std::to_string(timeout_s);
  DatabaseConnection& d = databases_[db];
  d.last_used = now;
  try {
    // With less than libpq's 2 s granularity left, first make sure the server answers in time.
    std::string slow;
    if (deadline - now < std::chrono::seconds(2) && !ConnectsBefore(conninfo, deadline, slow))
      throw std::runtime_error(slow);
    d.conn = ConnectAskingForUtf8(conninfo);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pqxx::result r = collectors::RunReadOnly(*d.conn, "SELECT extname FROM pg_extension",
                                             std::max(kMinCollectorTime, std::min(kFactsTimeout, left)));
    d.extensions.clear();
    for (const auto& row : r) d.extensions.insert(row[0].c_str());
    d.backoff = std::chrono::milliseconds(0);
    LogDebug("connected", {{"target", config_.name}, {"database", db}});
    return &d;
  } catch (const std::exception& e) {
    d.conn.reset();
    d.backoff = d.backoff.count() == 0 ? kMinBackoff : std::min(kMaxBackoff, d.backoff * 2);
    d.next_attempt = Clock::now() + d.backoff;
    d.last_error = OneLine(e.what());
    error = "cannot connect to database " + db + ": " + d.last_error;
    LogWarn("cannot connect", {{"target", config_.name}, {"database", db}, {"error", d.last_error}});
    return nullptr;
  }
}

CollectorOutcome Target::RunOnPostgres(const std::shared_ptr<const Definitions>& defs,
                                       const collectors::PlannedCollector& p, const std::string& database,
                                       std::unique_ptr<pqxx::connection>& conn, Clock::time_point deadline,
                                       Tally& tally) {
  return RunOne(
      defs, p, database, conn != nullptr,
      [&](collectors::Millis timeout, const Labels& extra) {
        collectors::CollectorRun run;
        collectors::FilesystemAccess fs;
        if (!p.definition->filesystem_column.empty()) {
          try {
            fs = FilesystemAccessFor(*conn, deadline);
          } catch (const std::exception& e) {
            conn.reset();
            run.connection_lost = true;
            run.error = "connection lost: " + OneLine(e.what());
            return run;
          }
        }
        run = collectors::RunCollector(*conn, p, timeout, extra, fs, config_.prepared_statements);
        if (run.connection_lost) conn.reset();
        return run;
      },
      deadline, tally);
}

const collectors::FilesystemAccess& Target::FilesystemAccessFor(pqxx::connection_base& conn,
                                                                Clock::time_point deadline) {
  if (fs_access_) return *fs_access_;
  collectors::FilesystemAccess access;
  access.path_prefix = config_.filesystem.path_prefix;
  const std::string key = "targets[" + config_.name + "].filesystem.visible";
  if (config_.filesystem.mode == FilesystemVisibility::Mode::No) {
    access.denied_reason = "disabled";
    access.denied_detail = "filesystem not looked at: " + key + " is no";
    return *(fs_access_ = access);
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  try {
    // inet_server_addr() is NULL over a Unix socket. data_directory needs
    // pg_read_all_settings (in pg_monitor).
    pqxx::result r = collectors::RunReadOnly(
        conn,
        "SELECT coalesce(inet_server_addr() <<= '127.0.0.0/8'::inet OR inet_server_addr() = '::1'::inet, true), "
        "coalesce(host(inet_server_addr()), 'a Unix socket'), current_setting('data_directory'), "
        "current_setting('port'), extract(epoch FROM pg_postmaster_start_time())::bigint",
        std::max(kMinCollectorTime, std::min(kFactsTimeout, left)));
    const bool local = r[0][0].as<bool>();
    const std::string server_addr = r[0][1].c_str();
    const std::string data_dir = r[0][2].c_str();
    const std::string port = r[0][3].c_str();
    const long long started = r[0][4].as<long long>();
    if (!local && config_.filesystem.mode == FilesystemVisibility::Mode::Auto) {
      access.denied_reason = "not_local";
      access.denied_detail = "filesystem not looked at: the server is reached at " + server_addr +
                             ", not a Unix socket or loopback address (set " + key +
                             ": yes if its volume is mounted here)";
      return *(fs_access_ = access);
    }
    // postmaster.pid: line 3 is the start time (Unix seconds), line 4 the port.
    const std::string pid_path = access.path_prefix + data_dir + "/postmaster.pid";
    std::ifstream pid(pid_path);
    if (pid) {
      std::string lines[4];
      for (auto& l : lines) std::getline(pid, l);
      long long pid_started = std::atoll(lines[2].c_str());
      // The server notes its start time after writing postmaster.pid; they differ by the startup's duration.
      if (lines[3] != port || std::llabs(pid_started - started) > 60) {
        access.denied_reason = "other_server";
        access.denied_detail = "filesystem not looked at: " + pid_path + " belongs to another server (port " +
                               lines[3] + ", started at " + lines[2] + "; this server: port " + port + ", started at " +
                               std::to_string(started) + ")";
        return *(fs_access_ = access);
      }
    } else if (errno == ENOENT) {
      struct stat st {};
      if (stat((access.path_prefix + data_dir).c_str(), &st) == 0) {
        access.denied_reason = "other_server";
        access.denied_detail = "filesystem not looked at: " + access.path_prefix + data_dir +
                               " has no postmaster.pid, so it is not this running server's data directory";
        return *(fs_access_ = access);
      }
    }
    // Otherwise (unreadable pid file, missing directory) each path reports what statvfs says.
    access.allowed = true;
  } catch (const std::exception& e) {
    if (!conn.is_open()) throw;
    access.denied_reason = "error";
    access.denied_detail = "filesystem not looked at: cannot read the server's data directory: " + OneLine(e.what());
  }
  return *(fs_access_ = access);
}

CollectorOutcome Target::RunOne(const std::shared_ptr<const Definitions>& defs, const collectors::PlannedCollector& p,
                                const std::string& database, bool connected, const RunFn& run_fn,
                                Clock::time_point deadline, Tally& tally) {
  const collectors::Definition& def = *p.definition;
  CollectorOutcome out;
  out.name = def.name;
  out.database = database;
  const std::string key = def.name + '\x1f' + database;
  auto cached = cache_.find(key);
  auto now = Clock::now();
  if (cached != cache_.end() && cached->second.definition == &def && now - cached->second.at < def.ttl) {
    out = cached->second.outcome;
    out.status = CollectorStatus::Cached;
    tally.cache_hits++;
    tally.series += out.series;
    return out;
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
  if (!connected) {
    out.detail = "not run: the connection was lost earlier in this scrape";
  } else if (left < kMinCollectorTime) {
    out.detail = "not run: the scrape deadline was reached";
  } else {
    Labels extra = labels_;
    if (def.scope == collectors::Scope::Database) extra.emplace_back("datname", database);
    collectors::CollectorRun run = run_fn(std::min(def.timeout, left), extra);
    out.duration_seconds = run.duration_seconds;
    tally.seconds += run.duration_seconds;
    tally.runs++;
    if (run.success) {
      out.status = CollectorStatus::Ok;
      for (const std::string& note : run.notes) {
        out.detail += (out.detail.empty() ? "" : "; ") + note;
        LogDebug("collector note", {{"target", config_.name}, {"collector", def.name}, {"note", note}});
      }
      out.series = run.mapped.series;
      out.families = std::make_shared<const std::vector<collectors::Family>>(std::move(run.mapped.families));
      tally.series += out.series;
      tally.dropped_duplicates += run.mapped.dropped_duplicates;
      tally.dropped_limit += run.mapped.dropped_limit;
      if (run.mapped.dropped_duplicates || run.mapped.dropped_limit)
        LogDebug("series dropped", {{"target", config_.name},
                                    {"collector", def.name},
                                    {"database", database},
                                    {"duplicates", std::to_string(run.mapped.dropped_duplicates)},
                                    {"over_limit", std::to_string(run.mapped.dropped_limit)}});
    } else {
      out.detail = OneLine(run.error);
    }
  }
  if (out.status == CollectorStatus::Failed) {
    tally.failures++;
    LogWarn("collector failed", {{"target", config_.name},
                                 {"collector", def.name},
                                 {"database", database},
                                 {"duration_ms", Ms(out.duration_seconds)},
                                 {"error", out.detail}});
    cache_.erase(key);
  } else if (def.ttl.count() > 0) {
    cache_[key] = CacheEntry{&def, defs, Clock::now(), out};
  }
  return out;
}

CollectorOutcome Target::BackrestOutcome(Clock::time_point until) {
  CollectorOutcome out;
  out.name = BackrestCollector::kName;
  bool running = false;
  auto r = backrest_->Take(until, running);
  bool fresh = false;
  if (!r) {
    out.detail = "pgbackrest info has not finished yet (timeout " +
                 collectors::FormatDuration(backrest_->config().timeout) + ")";
  } else {
    fresh = r->sequence != backrest_seen_;
    backrest_seen_ = r->sequence;
    out.status = !r->ok ? CollectorStatus::Failed : fresh ? CollectorStatus::Ok : CollectorStatus::Cached;
    out.detail = OneLine(r->error);
    if (running) out.detail += std::string(out.detail.empty() ? "" : "; ") + "a newer pgbackrest info is still running";
    out.duration_seconds = r->duration_seconds;
    out.series = r->series;
    out.families = r->families;
  }
  const bool failed = out.status == CollectorStatus::Failed;
  metrics_.CollectorDone(config_.name, out.name, fresh ? 1 : 0, failed ? 1 : 0, fresh || failed ? 0 : 1,
                         out.duration_seconds, out.series, 0, 0);
  return out;
}

std::shared_ptr<const Collection> Target::Collect(const std::shared_ptr<const Definitions>& defs,
                                                  Clock::time_point deadline) {
  // A request that joins later may move the deadline out; look before each step.
  auto latest = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    deadline = std::max(deadline, inflight_deadline_);
    return deadline;
  };
  // A collector cut off by the deadline it started with runs again if a later waiter moved
  // the deadline out since (its statement timeout was fixed when it started).
  auto run_pg = [&](const collectors::PlannedCollector& p, const std::string& db,
                    std::unique_ptr<pqxx::connection>& conn, Tally& tally) {
    Clock::time_point used = latest();
    CollectorOutcome o = RunOnPostgres(defs, p, db, conn, used, tally);
    if (o.status == CollectorStatus::Failed && latest() > used + kMinCollectorTime)
      o = RunOnPostgres(defs, p, db, conn, deadline, tally);
    return o;
  };
  auto start = Clock::now();
  auto c = std::make_shared<Collection>();
  // pgbackrest info runs beside the SQL collectors; only the collection that started it waits for it.
  const bool backrest_started = backrest_ && backrest_->Refresh();
  std::string error;
  fs_access_.reset();
  c->up = ReadFacts(c->facts, latest(), error);
  if (!c->up) {
    c->error = error;
    LogDebug("server down", {{"target", config_.name}, {"error", error}});
  } else {
    collectors::Plan plan = collectors::MakePlan(*defs, c->facts);
    std::map<std::string, Tally> tallies;
    for (const collectors::PlannedCollector& p : plan.run) {
      if (p.definition->scope != collectors::Scope::Server) continue;
      if (kind_ == collectors::TargetKind::PgBouncer) {
        c->collectors.push_back(RunOne(
            defs, p, "", console_ != nullptr,
            [&](collectors::Millis timeout, const Labels& extra) {
              auto run = collectors::RunConsoleCollector(*console_, p, timeout, extra);
              if (run.connection_lost) console_.reset();
              return run;
            },
            latest(), tallies[p.definition->name]));
        continue;
      }
      c->collectors.push_back(run_pg(p, "", conn_, tallies[p.definition->name]));
    }

    if (config_.databases.enabled && kind_ == collectors::TargetKind::Postgres && conn_ &&
        (!discovery_done_ || Clock::now() - discovered_at_ >= config_.databases.refresh))
      Discover(latest());
    std::vector<std::string> dbs{current_database_};
    if (config_.databases.enabled && discovery_done_ && kind_ == collectors::TargetKind::Postgres) dbs = discovered_;
    for (const std::string& db : dbs) {
      const bool own = db == current_database_;
      std::string db_error;
      DatabaseConnection* other = own ? nullptr : OpenDatabase(db, latest(), db_error);
      const std::set<std::string>& extensions = own ? c->facts.extensions
                                                    : (other ? other->extensions : c->facts.extensions);
      for (const collectors::PlannedCollector& p : plan.run) {
        const collectors::Definition& def = *p.definition;
        if (def.scope != collectors::Scope::Database) continue;
        if (def.required_extension && (own || other) && !extensions.count(*def.required_extension)) {
          CollectorOutcome skipped;
          skipped.name = def.name;
          skipped.database = db;
          skipped.status = CollectorStatus::Skipped;
          skipped.detail = "extension " + *def.required_extension + " is not installed in this database";
          c->collectors.push_back(std::move(skipped));
          continue;
        }
        Tally& tally = tallies[def.name];
        if (!own && !other) {
          CollectorOutcome failed;
          failed.name = def.name;
          failed.database = db;
          failed.detail = db_error;
          tally.failures++;
          c->collectors.push_back(std::move(failed));
          continue;
        }
        c->collectors.push_back(run_pg(p, db, own ? conn_ : other->conn, tally));
      }
    }
    for (const auto& [name, t] : tallies) {
      metrics_.CollectorDone(config_.name, name, t.runs, t.failures, t.cache_hits, t.seconds, t.series,
                             t.dropped_duplicates, t.dropped_limit);
    }
    for (const collectors::SkippedCollector& s : plan.skipped) {
      CollectorOutcome out;
      out.name = s.definition->name;
      out.status = CollectorStatus::Skipped;
      out.detail = s.reason;
      c->collectors.push_back(std::move(out));
    }
  }
  // logs: errors by kind from the server's log (agent/sources/logs.h)
  if (logs_ && c->up && conn_)
    c->collectors.push_back(logs_->Collect(
        *conn_, [&] { return FilesystemAccessFor(*conn_, latest()); }, latest()));
  if (backrest_) c->collectors.push_back(BackrestOutcome(backrest_started ? latest() - kBackrestMargin : Clock::now()));
  c->duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  c->finished = std::chrono::system_clock::now();
  LogDebug("collected",
           {{"target", config_.name}, {"up", c->up ? "1" : "0"}, {"duration_ms", Ms(c->duration_seconds)}});
  return c;
}

}  // namespace pgpulse::agent
