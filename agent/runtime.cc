#include "agent/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <ctime>
#include <set>

#include "agent/exporter_compat.h"
#include "agent/log.h"
#include "agent/profile_health.h"
#include "collectors/embedded.h"
#include "collectors/exposition.h"

namespace pgpulse::agent {

namespace {

std::string HtmlEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string RenderSuffix(const Labels& labels) {
  if (labels.empty()) return "";
  return collectors::RenderLabels(labels);
}

std::string FormatTime(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

// The last reload's time and outcome; a rejected one with its errors (which name files and
// keys, never a password: Redact guards against one quoted by a parser).
std::string RenderLastReload(const Agent::ReloadRecord& r) {
  if (r.at == std::chrono::system_clock::time_point{}) return "";
  std::string h =
      "<p>Last reload: " + FormatTime(r.at) + ", " +
      (r.ok ? std::string("ok") : "<span class=\"failed\">rejected; the previous configuration keeps running</span>");
  if (r.ok) return h + "</p>\n";
  h += "</p>\n<ul>\n";
  for (const std::string& e : r.errors) h += "<li class=\"failed\">" + HtmlEscape(Redact(e)) + "</li>\n";
  return h + "</ul>\n";
}

// A reload keeps a running Target (and its connections, caches and compiled
// patterns) only when nothing it was built from changed: the whole target
// section, the resolved connection (password file contents, connect_timeout)
// and its labels (which depend on how many targets there are).
bool SameTarget(const Target& old, const TargetConfig& config, const ConnectionSpec& spec, const Labels& labels) {
  return old.config() == config && old.spec().conninfo == spec.conninfo && old.labels() == labels;
}

}  // namespace

namespace {

// postgres_exporter's collector of a profile definition: pe_<collector>[__<part>]; "exporter" for
// its built-in metrics; "" for any other definition.
std::string ExporterCollectorOf(const std::string& definition) {
  if (definition.rfind("pe_", 0) != 0) return "";
  std::string rest = definition.substr(3);
  return rest.substr(0, rest.find("__"));
}

// What postgres_exporter's flags say about a definition: on, off, or nothing (nullopt).
std::optional<bool> ExporterSwitchFor(const ExporterSwitches& sw, const std::string& definition) {
  const std::string collector = ExporterCollectorOf(definition);
  if (collector.empty()) return std::nullopt;
  if (collector == "exporter" && !sw.default_metrics) return false;
  if (collector == "settings" && !sw.settings_metrics) return false;
  auto it = sw.collectors.find(collector);
  // The query texts come with the collector only when --collector.stat_statements.include_query says so.
  if (definition == "pe_stat_statements__query")
    return it != sw.collectors.end() && it->second && sw.stat_statements.include_query;
  if (it != sw.collectors.end()) return it->second;
  return std::nullopt;
}

// postgres_exporter's flags switch the postgres_exporter profile's collectors: refused without
// that profile, and for a collector pgpulse does not serve.
void CheckExporterSwitches(const Config& cfg, const std::vector<collectors::Definition>& defs,
                           std::vector<std::string>& errors) {
  if (!cfg.exporter.any()) return;
  if (!ServesPostgresExporter(cfg.metrics_profile)) {
    errors.push_back(
        "--collector.*, --no-collector.*, --disable-default-metrics and --disable-settings-metrics switch "
        "postgres_exporter's collectors, served with --metrics.profile=postgres_exporter or both (the profile is "
        "pgpulse)");
    return;
  }
  std::set<std::string> served;
  for (const auto& d : defs) served.insert(ExporterCollectorOf(d.name));
  for (const auto& [collector, on] : cfg.exporter.collectors) {
    if (on && !served.count(collector))
      errors.push_back("--collector." + collector + ": postgres_exporter's " + collector +
                       " collector is not served by pgpulse (README: postgres_exporter's names)");
  }
}

// The profile's embedded definitions, then the config's directories, with the config's enable/disable
// and overrides applied; names the config gives that no definition has are errors.
std::shared_ptr<Definitions> ResolveDefinitions(const Config& cfg, std::vector<std::string>& errors) {
  std::vector<collectors::Source> sources;
  for (const std::string& dir : cfg.definition_dirs) {
    auto more = collectors::ReadDefinitionDirectory(dir, errors);
    sources.insert(sources.end(), more.begin(), more.end());
  }
  const TranslatedQueries* queries = cfg.exporter.queries ? &*cfg.exporter.queries : nullptr;
  if (queries && !ServesPostgresExporter(cfg.metrics_profile)) {
    errors.push_back(
        "--extend.query-path: postgres_exporter's queries are served with "
        "--metrics.profile=postgres_exporter or both (the profile is pgpulse)");
    queries = nullptr;
  }
  collectors::LoadResult defs = LoadProfileDefinitions(cfg.metrics_profile, sources, queries);
  errors.insert(errors.end(), defs.errors.begin(), defs.errors.end());
  std::set<std::string> known;
  for (const auto& d : defs.definitions) known.insert(d.name);
  if (defs.ok()) {
    for (const std::string& name : cfg.disabled_collectors) {
      if (!known.count(name))
        errors.push_back(cfg.origin + ": collectors.disable names unknown collector '" + name + "'");
    }
    for (const std::string& name : cfg.enabled_collectors) {
      if (!known.count(name))
        errors.push_back(cfg.origin + ": collectors.enable names unknown collector '" + name + "'");
      if (cfg.disabled_collectors.count(name))
        errors.push_back(cfg.origin + ": collector '" + name + "' is both enabled and disabled");
    }
    for (const auto& [name, ov] : cfg.overrides) {
      if (!known.count(name))
        errors.push_back(ov.where + ": collectors.overrides names unknown collector '" + name + "'");
    }
  }
  if (defs.ok()) CheckExporterSwitches(cfg, defs.definitions, errors);
  auto kept = std::make_shared<Definitions>();
  for (auto& d : defs.definitions) {
    bool wanted = d.enabled ? !cfg.disabled_collectors.count(d.name) : cfg.enabled_collectors.count(d.name) > 0;
    if (auto flagged = ExporterSwitchFor(cfg.exporter, d.name)) wanted = *flagged;
    if (!wanted) continue;
    ApplyStatStatementsOptions(cfg.exporter.stat_statements, d, errors);
    if (auto it = cfg.overrides.find(d.name); it != cfg.overrides.end()) {
      if (it->second.ttl) d.ttl = *it->second.ttl;
      if (it->second.timeout) d.timeout = *it->second.timeout;
      if (it->second.max_series) d.max_series = *it->second.max_series;
      if (it->second.max_rows) d.max_rows = *it->second.max_rows;
    }
    kept->push_back(std::move(d));
  }
  return kept;
}

// A target's constant label may not be one a collector produces.
void CheckConstantLabels(const Config& cfg, const Definitions& defs, std::vector<std::string>& errors) {
  std::set<std::string> produced;
  for (const auto& d : defs) {
    for (const auto& c : d.columns) {
      if (c.usage == collectors::ColumnUsage::Label) produced.insert(c.label);
    }
  }
  for (const TargetConfig& t : cfg.targets) {
    for (const auto& [k, v] : t.labels) {
      if (produced.count(k))
        errors.push_back("target '" + t.name + "': constant label '" + k +
                         "' is also produced by a collector; rename one of them");
    }
  }
}

// A password_command that cannot run is found at load; it runs for each new connection.
void CheckPasswordCommand(const std::vector<std::string>& argv, const std::string& who,
                          std::vector<std::string>& errors) {
  if (!argv.empty() && access(argv[0].c_str(), X_OK) != 0)
    errors.push_back(who + ": password_command " + argv[0] + " cannot be run: " + std::strerror(errno));
}

// Auth modules with their password files read and their options checked by libpq.
std::map<std::string, ResolvedAuthModule> ResolveAuthModules(const Config& cfg, std::vector<std::string>& errors) {
  std::map<std::string, ResolvedAuthModule> modules;
  for (const auto& [name, mod] : cfg.auth_modules) {
    ResolvedAuthModule resolved{mod.user, "", mod.options, mod.allowed_targets};
    std::string error;
    if (!mod.password_file.empty()) {
      auto p = ReadPasswordFile(mod.password_file, error);
      if (!p) {
        errors.push_back("auth module '" + name + "': " + error);
        continue;
      }
      resolved.password = *p;
      AddSecret(*p);
    }
    CheckPasswordCommand(mod.password_command, "auth module '" + name + "'", errors);
    // libpq itself says whether the options are keywords it knows.
    if (!ParseDsn(BuildConninfo(mod.options), "", cfg.connect_timeout, error))
      errors.push_back("auth module '" + name + "': options: " + error);
    modules[name] = std::move(resolved);
  }
  return modules;
}

// Found out at load (and by `pgpulse check`) rather than at the first scrape.
void CheckBackrestPaths(const TargetConfig& t, std::vector<std::string>& errors) {
  if (!t.pgbackrest.enabled()) return;
  if (access(t.pgbackrest.command.c_str(), X_OK) != 0)
    errors.push_back("target '" + t.name + "': pgbackrest.command " + t.pgbackrest.command +
                     " cannot be run: " + std::strerror(errno));
  if (!t.pgbackrest.config.empty() && access(t.pgbackrest.config.c_str(), R_OK) != 0)
    errors.push_back("target '" + t.name + "': pgbackrest.config " + t.pgbackrest.config +
                     " cannot be read: " + std::strerror(errno));
}

// Each target's connection: its password file read, its DSN parsed and completed.
std::vector<std::pair<TargetConfig, ConnectionSpec>> ResolveTargets(const Config& cfg,
                                                                    std::vector<std::string>& errors) {
  std::vector<std::pair<TargetConfig, ConnectionSpec>> specs;
  for (const TargetConfig& t : cfg.targets) {
    std::string password, error;
    if (!t.password_file.empty()) {
      auto p = ReadPasswordFile(t.password_file, error);
      if (!p) {
        errors.push_back("target '" + t.name + "': " + error);
        continue;
      }
      password = *p;
    }
    CheckBackrestPaths(t, errors);
    CheckPasswordCommand(t.password_command, "target '" + t.name + "'", errors);
    auto spec = ParseDsn(t.dsn, password, cfg.connect_timeout, error);
    if (!spec) {
      errors.push_back("target '" + t.name + "': " + error);
      continue;
    }
    AddSecret(spec->password);
    specs.emplace_back(t, std::move(*spec));
  }
  return specs;
}

}  // namespace

std::shared_ptr<const Runtime> BuildRuntime(const ConfigResult& loaded, const Runtime* previous, SelfMetrics& metrics,
                                            std::vector<std::string>& errors) {
  errors = loaded.errors;
  const Config& cfg = loaded.config;
  std::shared_ptr<Definitions> defs = ResolveDefinitions(cfg, errors);
  CheckConstantLabels(cfg, *defs, errors);
  std::map<std::string, ResolvedAuthModule> modules = ResolveAuthModules(cfg, errors);
  std::vector<std::pair<TargetConfig, ConnectionSpec>> specs = ResolveTargets(cfg, errors);
  if (!errors.empty()) return nullptr;

  auto rt = std::make_shared<Runtime>();
  rt->config = cfg;
  rt->auth_modules = std::move(modules);
  rt->definitions = std::move(defs);
  const bool several = specs.size() > 1;
  for (auto& [tc, spec] : specs) {
    Labels labels;
    if (several) labels.emplace_back("target", tc.name);
    labels.insert(labels.end(), tc.labels.begin(), tc.labels.end());
    std::shared_ptr<Target> reuse;
    if (previous) {
      for (const auto& old : previous->targets) {
        if (SameTarget(*old, tc, spec, labels)) reuse = old;
      }
    }
    rt->targets.push_back(reuse ? reuse : std::make_shared<Target>(tc, spec, labels, metrics));
  }
  return rt;
}

Agent::Agent(AgentOptions options, SelfMetrics& metrics) : options_(std::move(options)), metrics_(metrics) {
  retirer_ = std::thread([this] { RetireLoop(); });
}

Agent::~Agent() {
  {
    std::lock_guard<std::mutex> lock(adhoc_mu_);
    stopping_ = true;
    for (auto& [key, a] : adhoc_) retired_.push_back(std::move(a.target));
    adhoc_.clear();
  }
  retire_cv_.notify_all();
  retirer_.join();
}

void Agent::Retire(std::shared_ptr<Target> target) {
  retired_.push_back(std::move(target));
  retire_cv_.notify_all();
}

void Agent::RetireLoop() {
  std::unique_lock<std::mutex> lock(adhoc_mu_);
  for (;;) {
    // A target still used by a request in flight is kept until that request lets go.
    std::vector<std::shared_ptr<Target>> done;
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (it->use_count() == 1) {
        done.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
    if (!done.empty()) {
      lock.unlock();
      for (auto& t : done) {
        std::string name = t->config().name;
        t.reset();  // joins its worker: may take until the server answers or times out
        metrics_.ForgetTarget(name);
      }
      lock.lock();
      continue;
    }
    if (stopping_ && retired_.empty()) return;
    retire_cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

ConfigResult LoadAgentConfig(const AgentOptions& options) {
  ConfigResult loaded = LoadConfig(options.config_file, "", "");
  Config& cfg = loaded.config;
  const bool file_ok = loaded.ok();
  loaded.errors.insert(loaded.errors.end(), options.environment_errors.begin(), options.environment_errors.end());
  if (!file_ok) return loaded;
  if (cfg.targets_from_environment) cfg.targets = EnvironmentTargets(options.data_sources, loaded.errors);
  if (options.metrics_profile) cfg.metrics_profile = *options.metrics_profile;
  ApplyExporterFlags(options.exporter, cfg, loaded.errors);
  return loaded;
}

std::shared_ptr<const Runtime> Agent::runtime() const { return std::atomic_load(&runtime_); }

Agent::ReloadRecord Agent::LastReload() const {
  std::lock_guard<std::mutex> lock(reload_mu_);
  return last_reload_;
}

std::vector<std::string> Agent::Reload(const std::vector<std::string>& refused) {
  std::lock_guard<std::mutex> reloading(reload_mu_);  // SIGHUP and POST /-/reload may meet
  ConfigResult loaded = LoadAgentConfig(options_);
  std::vector<std::string> errors;
  auto current = runtime();
  auto next = BuildRuntime(loaded, current.get(), metrics_, errors);
  if (!refused.empty()) {
    errors.insert(errors.end(), refused.begin(), refused.end());
    next = nullptr;
  }
  metrics_.ReloadDone(next != nullptr);
  last_reload_ =
      ReloadRecord{std::chrono::system_clock::now(), next != nullptr, next ? std::vector<std::string>{} : errors};
  if (!next) {
    for (const auto& e : errors) LogError("configuration rejected", {{"error", e}});
    if (current) LogWarn("keeping the previous configuration", {{"config", options_.config_file}});
    return errors;
  }
  std::atomic_store(&runtime_, next);
  {
    // Ad-hoc targets were made with the old auth modules.
    std::lock_guard<std::mutex> lock(adhoc_mu_);
    for (auto& [key, a] : adhoc_) Retire(std::move(a.target));
    adhoc_.clear();
  }
  LogInfo("configuration loaded", {{"config", loaded.config.origin},
                                   {"targets", std::to_string(next->targets.size())},
                                   {"collectors", std::to_string(next->definitions->size())}});
  return {};
}

Clock::time_point Agent::Deadline(const Runtime& rt, double prometheus_timeout_seconds) const {
  using namespace std::chrono;
  milliseconds budget = rt.config.scrape_timeout;
  if (prometheus_timeout_seconds > 0) {
    auto from_header = milliseconds(static_cast<int64_t>(prometheus_timeout_seconds * 1000)) - rt.config.timeout_offset;
    budget = std::min(budget, std::max(milliseconds(100), from_header));
  }
  return Clock::now() + budget;
}

void Agent::RenderMetrics(double prometheus_timeout_seconds, const collectors::ExpositionSink& sink) {
  auto rt = runtime();
  std::vector<std::shared_ptr<Target>> targets;
  if (rt->config.collect_on_metrics_path) targets = rt->targets;
  Render(*rt, targets, Deadline(*rt, prometheus_timeout_seconds), true, sink);
}

namespace {

// "host[:port][/dbname]" with a DNS name, IPv4 or [IPv6] host; strict, since it
// becomes a connection target.
bool ParseAddress(const std::string& text, std::string& host, std::string& port, std::string& dbname) {
  if (text.empty() || text.size() > 255) return false;
  std::string rest = text;
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    dbname = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (dbname.empty() || dbname.find_first_not_of(
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != std::string::npos)
      return false;
  }
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos) return false;
    host = rest.substr(1, close - 1);
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos) return false;
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    if (!rest.empty()) port = rest.substr(1);
  } else {
    size_t colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) port = rest.substr(colon + 1);
    if (host.empty() ||
        host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != std::string::npos)
      return false;
  }
  if (!port.empty() && (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
                        std::stoi(port) == 0 || std::stoi(port) > 65535))
    return false;
  return true;
}

}  // namespace

std::shared_ptr<Target> Agent::AdhocTarget(const Runtime& rt, const std::string& address, const std::string& module,
                                           std::string& error, bool& forbidden) {
  auto mod = rt.auth_modules.find(module);
  if (mod == rt.auth_modules.end()) {
    error = "no auth module named '" + module + "' in the config";
    return nullptr;
  }
  std::string host, port, dbname;
  if (!ParseAddress(address, host, port, dbname)) {
    error = "target '" + address + "' is not host[:port][/dbname]";
    return nullptr;
  }
  if (!TargetAllowed(mod->second.allowed_targets, host, port.empty() ? 0 : std::stoi(port))) {
    error = "target '" + address + "' is not in the allowed_targets of auth module '" + module + "'";
    forbidden = true;
    LogWarn("probe target refused",
            {{"target", address}, {"auth_module", module}, {"reason", "not in allowed_targets"}});
    return nullptr;
  }
  const std::string key = module + '\x1f' + address;
  std::lock_guard<std::mutex> lock(adhoc_mu_);
  auto found = adhoc_.find(key);
  if (found != adhoc_.end()) {
    found->second.last_used = Clock::now();
    return found->second.target;
  }
  std::vector<std::pair<std::string, std::string>> opts{{"host", host}, {"user", mod->second.user}};
  if (!port.empty()) opts.emplace_back("port", port);
  for (const auto& o : mod->second.options) {
    if (o.first != "dbname" || dbname.empty()) opts.push_back(o);
  }
  if (!dbname.empty()) opts.emplace_back("dbname", dbname);
  auto spec = ParseDsn(BuildConninfo(opts), mod->second.password, rt.config.connect_timeout, error);
  if (!spec) return nullptr;
  while (adhoc_.size() >= rt.config.max_probe_targets) {
    auto oldest = adhoc_.begin();
    for (auto it = adhoc_.begin(); it != adhoc_.end(); ++it) {
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    }
    Retire(std::move(oldest->second.target));
    adhoc_.erase(oldest);
  }
  TargetConfig tc;
  tc.name = address;
  // The module's password is read again for each new connection, as a target's is (credentials.h).
  const AuthModule& source = rt.config.auth_modules.at(module);
  tc.password_file = source.password_file;
  tc.password_command = source.password_command;
  tc.password_command_timeout = source.password_command_timeout;
  auto target = std::make_shared<Target>(tc, *spec, Labels{}, metrics_);
  adhoc_[key] = Adhoc{target, Clock::now()};
  LogInfo("probe target added", {{"target", address}, {"auth_module", module}, {"server", spec->display}});
  return target;
}

Agent::ProbeResult Agent::RenderProbe(const std::string& target, const std::string& auth_module,
                                      double prometheus_timeout_seconds, const collectors::ExpositionSink& sink) {
  auto rt = runtime();
  if (auth_module.empty()) {
    for (const auto& t : rt->targets) {
      if (t->config().name != target) continue;
      Render(*rt, {t}, Deadline(*rt, prometheus_timeout_seconds), false, sink);
      return {200, ""};
    }
    return {404, "no target named '" + target + "' in the config (a server address needs &auth_module=NAME)\n"};
  }
  std::string error;
  bool forbidden = false;
  auto t = AdhocTarget(*rt, target, auth_module, error, forbidden);
  if (!t) return {forbidden ? 403 : 400, error + "\n"};
  Render(*rt, {t}, Deadline(*rt, prometheus_timeout_seconds), false, sink);
  return {200, ""};
}

namespace {

// pgpulse_collector_last_success_timestamp_seconds: the age of what is served, since a result
// from the ttl cache, or refreshed in the background, is older than the scrape.
collectors::Family ResultAge(const std::vector<std::shared_ptr<Target>>& targets,
                             const std::vector<std::shared_ptr<const Collection>>& results) {
  collectors::Family age;
  age.name = "pgpulse_collector_last_success_timestamp_seconds";
  age.help =
      "When the collector's served result was collected, as seconds since the Unix epoch (per database for "
      "database-scoped collectors); older than the scrape when served from its ttl cache.";
  for (size_t i = 0; i < targets.size(); ++i) {
    for (const CollectorOutcome& o : results[i]->collectors) {
      if ((o.status != CollectorStatus::Ok && o.status != CollectorStatus::Cached) ||
          o.collected_at == std::chrono::system_clock::time_point{})
        continue;
      Labels l{{"collector", o.name}};
      if (!o.database.empty()) l.emplace_back("datname", o.database);
      l.emplace_back("target", targets[i]->config().name);
      age.Add(RenderSuffix(l), std::chrono::duration<double>(o.collected_at.time_since_epoch()).count());
    }
  }
  return age;
}

}  // namespace

void Agent::Render(const Runtime& rt, const std::vector<std::shared_ptr<Target>>& targets, Clock::time_point deadline,
                   bool include_self, const collectors::ExpositionSink& sink) {
  const auto started = Clock::now();
  // Every target's collection runs on its own worker; waiting on them in turn
  // costs no more than the slowest.
  std::vector<std::shared_ptr<const Collection>> results(targets.size());
  std::vector<std::thread> waits;
  for (size_t i = 1; i < targets.size(); ++i)
    waits.emplace_back([&, i] { results[i] = targets[i]->Scrape(rt.definitions, deadline); });
  if (!targets.empty()) results[0] = targets[0]->Scrape(rt.definitions, deadline);
  for (auto& t : waits) t.join();

  collectors::Family up, info, bouncer_up, bouncer_info;  // made by the agent, not by a definition
  up.name = "pg_up";
  up.help = "1 if the server answered during this scrape, 0 if not.";
  info.name = "pg_info";
  info.help = "Always 1; labels give the server version and whether it is in recovery.";
  // A PgBouncer console gets names of its own, so pg_up (and alerts on it) keep meaning PostgreSQL.
  bouncer_up.name = "pgbouncer_up";
  bouncer_up.help = "1 if the PgBouncer admin console answered during this scrape, 0 if not.";
  bouncer_info.name = "pgbouncer_info";
  bouncer_info.help = "Always 1; the version label gives PgBouncer's version (SHOW VERSION).";
  for (size_t i = 0; i < targets.size(); ++i) {
    const Labels& labels = targets[i]->labels();
    if (targets[i]->kind() == collectors::TargetKind::PgBouncer) {
      bouncer_up.Add(RenderSuffix(labels), results[i]->up ? 1 : 0);
      if (results[i]->up) {
        Labels l = labels;
        l.emplace_back("version", results[i]->facts.version);
        bouncer_info.Add(RenderSuffix(l), 1);
      }
      continue;
    }
    up.Add(RenderSuffix(labels), results[i]->up ? 1 : 0);
    // The postgres_exporter profile serves its names only (pg_static says the version there).
    if (results[i]->up && rt.config.metrics_profile != MetricsProfile::PostgresExporter) {
      Labels l = labels;
      l.emplace_back("server_version", results[i]->facts.version.substr(0, results[i]->facts.version.find(' ')));
      l.emplace_back("server_version_num", std::to_string(results[i]->facts.version_num));
      l.emplace_back("in_recovery", results[i]->facts.in_recovery ? "true" : "false");
      info.Add(RenderSuffix(l), 1);
    }
  }
  std::vector<const collectors::Family*> order;
  for (const collectors::Family* f : {&up, &info, &bouncer_up, &bouncer_info}) {
    if (!f->values.empty()) order.push_back(f);
  }
  for (const auto& r : results) {
    for (const CollectorOutcome& o : r->collectors) {
      if (!o.families) continue;
      for (const collectors::Family& f : *o.families) order.push_back(&f);
    }
  }
  std::vector<collectors::Family> self;
  if (ServesPostgresExporter(rt.config.metrics_profile)) {
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const auto& queries = rt.config.exporter.queries;
    self = PostgresExporterHealth(targets, results, seconds, ++scrapes_, queries ? &*queries : nullptr);
  }
  if (include_self) {
    collectors::Family age = ResultAge(targets, results);
    if (!age.values.empty()) self.push_back(std::move(age));
    auto own = metrics_.Collect();
    self.insert(self.end(), std::make_move_iterator(own.begin()), std::make_move_iterator(own.end()));
  }
  for (const auto& f : self) order.push_back(&f);
  // In pieces into the sink: the whole text is never in memory at once, nor one whole family
  // (30,000 tables' worth of one column is 3 MB). 1 MiB: with 64 KiB pieces an uncompressed
  // full-size scrape took a third longer (more, smaller chunks on the socket).
  constexpr size_t kPieceBytes = 1024 * 1024;
  collectors::WriteExposition(order, kPieceBytes, sink);
}

bool Agent::Ready(std::string& detail) {
  auto rt = runtime();
  bool ready = true;
  auto deadline = Clock::now() + std::chrono::seconds(3);
  for (const auto& t : rt->targets) {
    auto last = t->Last();
    // A recent collection answers the question without touching the server.
    bool fresh = last && std::chrono::system_clock::now() - last->finished < std::chrono::seconds(30);
    if (!fresh) last = t->Scrape(rt->definitions, deadline);
    if (!last->up) {
      ready = false;
      detail += "target " + t->config().name + " is not reachable: " + last->error + "\n";
    } else {
      detail += "target " + t->config().name + " is reachable\n";
    }
  }
  return ready;
}

std::string Agent::RenderLanding(const std::string& telemetry_path) const {
  auto rt = runtime();
  std::string h =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pgpulse</title>"
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
      ".failed{color:#b00}.skipped,.pending{color:#777}</style>"
      "</head><body>\n<h1>pgpulse</h1>\n<p>PostgreSQL metrics for Prometheus. Metrics: <a href=\"" +
      HtmlEscape(telemetry_path) + "\">" + HtmlEscape(telemetry_path) +
      "</a> &middot; <a href=\"/healthz\">/healthz</a> &middot; <a href=\"/readyz\">/readyz</a></p>\n";
  h += "<p>Configuration: " + HtmlEscape(rt->config.origin) + ", " + std::to_string(rt->definitions->size()) +
       " collectors.</p>\n";
  h += RenderLastReload(LastReload());
  for (const auto& t : rt->targets) {
    auto last = t->Snapshot();
    h += "<h2>Target " + HtmlEscape(t->config().name) + "</h2>\n<p>" + HtmlEscape(t->spec().display) + "<br>";
    if (!last) {
      h += "Not scraped yet.</p>\n";
      continue;
    }
    h += std::string(last->partial ? "Collection in progress at " : "Last collection: ") + FormatTime(last->finished) +
         ", " + (last->up ? "server up" : "<span class=\"failed\">server down: " + HtmlEscape(last->error) + "</span>");
    if (last->up && t->kind() == collectors::TargetKind::PgBouncer)
      h += ", PgBouncer " + HtmlEscape(last->facts.version) + " (admin console)";
    else if (last->up)
      h += ", PostgreSQL " + HtmlEscape(last->facts.version) + (last->facts.in_recovery ? " (replica)" : " (primary)");
    h += "</p>\n";
    if (last->collectors.empty()) continue;
    h += "<table><tr><th>collector</th><th>status</th><th>duration</th><th>age</th><th>series</th><th>detail</th>"
         "</tr>\n";
    const auto now = std::chrono::system_clock::now();
    for (const CollectorOutcome& o : last->collectors) {
      char dur[32], age[32] = "";
      std::snprintf(dur, sizeof dur, "%.1f ms", o.duration_seconds * 1000);
      // How old the served result is: from the ttl cache, or refreshed in the background.
      if (o.collected_at != std::chrono::system_clock::time_point{})
        std::snprintf(age, sizeof age, "%.0f s", std::chrono::duration<double>(now - o.collected_at).count());
      std::string where = o.database.empty() ? "" : " <small>(" + HtmlEscape(o.database) + ")</small>";
      h += std::string("<tr class=\"") + StatusName(o.status) + "\"><td>" + HtmlEscape(o.name) + where + "</td><td>" +
           StatusName(o.status) + "</td><td>" + dur + "</td><td>" + age + "</td><td>" + std::to_string(o.series) +
           "</td><td>" + HtmlEscape(o.detail) + "</td></tr>\n";
    }
    h += "</table>\n";
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace pgpulse::agent
