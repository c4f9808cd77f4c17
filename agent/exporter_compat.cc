#include "agent/exporter_compat.h"

#include <unistd.h>

#include <cctype>
#include <fstream>
#include <iomanip>
#include <optional>
#include <set>
#include <sstream>

#include "agent/dsn.h"
#include "agent/log.h"
#include "collectors/definition.h"
#include "collectors/embedded.h"

extern char** environ;

namespace pgpulse::agent {
namespace {

// Every DATA_SOURCE_* and PG_EXPORTER_* variable postgres_exporter (0.11 to 0.20) reads, and the flag
// each one stands for ("" for the data source ones, read by ReadDataSources).
const std::map<std::string, std::string>& KnownVariables() {
  static const std::map<std::string, std::string> known{
      {"DATA_SOURCE_NAME", ""},
      {"DATA_SOURCE_URI", ""},
      {"DATA_SOURCE_URI_FILE", ""},
      {"DATA_SOURCE_USER", ""},
      {"DATA_SOURCE_USER_FILE", ""},
      {"DATA_SOURCE_PASS", ""},
      {"DATA_SOURCE_PASS_FILE", ""},
      {"PG_EXPORTER_WEB_LISTEN_ADDRESS", "--web.listen-address"},  // up to 0.10; pgpulse still reads it
      {"PG_EXPORTER_WEB_TELEMETRY_PATH", "--web.telemetry-path"},
      {"PG_EXPORTER_DISABLE_DEFAULT_METRICS", "--disable-default-metrics"},
      {"PG_EXPORTER_DISABLE_SETTINGS_METRICS", "--disable-settings-metrics"},
      {"PG_EXPORTER_AUTO_DISCOVER_DATABASES", "--auto-discover-databases"},
      {"PG_EXPORTER_EXTEND_QUERY_PATH", "--extend.query-path"},
      {"PG_EXPORTER_CONSTANT_LABELS", "--constantLabels"},
      {"PG_EXPORTER_EXCLUDE_DATABASES", "--exclude-databases"},
      {"PG_EXPORTER_INCLUDE_DATABASES", "--include-databases"},
      {"PG_EXPORTER_METRIC_PREFIX", "--metric-prefix"},
      {"PG_EXPORTER_COLLECTION_TIMEOUT", "--collection-timeout"},
  };
  return known;
}

std::string Trimmed(std::string s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// A variable's value, or the trimmed content of the file named by VAR_FILE (which wins), as
// postgres_exporter reads them. "" when neither is set.
std::string ValueOrFile(const Environment& env, const std::string& var, std::vector<std::string>& errors) {
  auto file = env.find(var + "_FILE");
  if (file != env.end() && !file->second.empty()) {
    std::ifstream in(file->second, std::ios::binary);
    if (!in) {
      errors.push_back(var + "_FILE: cannot read " + file->second);
      return "";
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return Trimmed(ss.str());
  }
  auto it = env.find(var);
  return it == env.end() ? "" : it->second;
}

// Percent-encodes a URI's user or password part.
std::string UriEscaped(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = Trimmed(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// A database name as a whole-name regex (DatabaseDiscovery takes regexes).
std::string ExactName(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// A target name from a DSN's host and port ("db1.example.com_5432"); "" when it does not parse.
std::string NameFromDsn(const std::string& dsn) {
  std::string error;
  auto spec = ParseDsn(dsn, "", Millis(5000), error);
  if (!spec) return "";
  std::string host = "localhost", port = "5432";
  for (const auto& [key, value] : spec->options) {
    if (key == "host" && !value.empty()) host = value[0] == '/' ? "socket" : value;
    if (key == "port" && !value.empty()) port = value;
  }
  std::string name = host + "_" + port;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
  }
  return name;
}

}  // namespace

Environment ProcessEnvironment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    size_t eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return env;
}

DataSources ReadDataSources(const Environment& env, std::vector<std::string>& errors) {
  for (const auto& [name, value] : env) {
    const bool ours = name.rfind("DATA_SOURCE_", 0) == 0 || name.rfind("PG_EXPORTER_", 0) == 0;
    if (ours && !KnownVariables().count(name))
      errors.push_back("environment variable " + name +
                       ": not one postgres_exporter or pgpulse reads (a misspelling would be ignored silently there)");
  }
  DataSources out;
  if (auto dsn = env.find("DATA_SOURCE_NAME"); dsn != env.end() && !dsn->second.empty()) {
    std::vector<std::string> parts;
    std::stringstream ss(dsn->second);
    std::string part;
    while (std::getline(ss, part, ',')) parts.push_back(Trimmed(part));
    if (dsn->second.back() == ',') parts.emplace_back();
    for (size_t i = 0; i < parts.size(); ++i) {
      if (parts[i].empty())
        errors.push_back("DATA_SOURCE_NAME: entry " + std::to_string(i + 1) + " of " + std::to_string(parts.size()) +
                         " (separated by ',') is empty");
      else out.dsns.push_back(parts[i]);
    }
    // postgres_exporter reads nothing else then; pgpulse also takes a password file for a DSN
    // without a password (read for every connection, so a rotated password is picked up).
    if (auto pf = env.find("DATA_SOURCE_PASS_FILE"); pf != env.end()) out.password_file = pf->second;
    return out;
  }
  const std::string uri = ValueOrFile(env, "DATA_SOURCE_URI", errors);
  const std::string user = ValueOrFile(env, "DATA_SOURCE_USER", errors);
  std::string password;
  if (auto pf = env.find("DATA_SOURCE_PASS_FILE"); pf != env.end() && !pf->second.empty()) {
    out.password_file = pf->second;
  } else if (auto p = env.find("DATA_SOURCE_PASS"); p != env.end()) {
    password = p->second;
  }
  if (uri.empty()) {
    if (!user.empty() || !password.empty() || !out.password_file.empty())
      errors.push_back(
          "DATA_SOURCE_USER or DATA_SOURCE_PASS is set but neither DATA_SOURCE_NAME nor DATA_SOURCE_URI names a "
          "server to use them for");
    return out;
  }
  if (uri.find("://") != std::string::npos || uri.find('@') != std::string::npos)
    errors.push_back(
        "DATA_SOURCE_URI: give host:port/dbname?options, without a scheme or user (they come from "
        "DATA_SOURCE_USER and DATA_SOURCE_PASS)");
  std::string userinfo;
  if (!user.empty() || !password.empty())
    userinfo = UriEscaped(user) + (password.empty() ? "" : ":" + UriEscaped(password)) + "@";
  out.dsns.push_back("postgresql://" + userinfo + uri);
  return out;
}

std::vector<TargetConfig> EnvironmentTargets(const DataSources& sources, std::vector<std::string>& errors) {
  if (sources.dsns.size() <= 1)
    return {DefaultTarget(sources.dsns.empty() ? "" : sources.dsns[0], sources.password_file)};
  std::vector<TargetConfig> targets;
  std::set<std::string> names;
  for (size_t i = 0; i < sources.dsns.size(); ++i) {
    std::string name = NameFromDsn(sources.dsns[i]);
    if (name.empty()) {
      errors.push_back("DATA_SOURCE_NAME: entry " + std::to_string(i + 1) + " is not a valid connection string");
      continue;
    }
    if (names.count(name)) name += "_" + std::to_string(i + 1);
    names.insert(name);
    TargetConfig tc = DefaultTarget(sources.dsns[i], sources.password_file);
    tc.name = name;
    targets.push_back(std::move(tc));
  }
  return targets;
}

const std::vector<std::pair<std::string, bool>>& ExporterCollectorNames() {
  static const std::vector<std::pair<std::string, bool>> names{
      {"buffercache_summary", false},
      {"database", true},
      {"database_wraparound", false},
      {"locks", true},
      {"long_running_transactions", false},
      {"postmaster", false},
      {"process_idle", false},
      {"replication", true},
      {"replication_slots", true},
      {"roles", true},
      {"settings", true},
      {"stat_activity", true},
      {"stat_activity_autovacuum", false},
      {"stat_archiver", true},
      {"stat_bgwriter", true},
      {"stat_checkpointer", false},
      {"stat_database", true},
      {"stat_progress_vacuum", true},
      {"stat_replication", true},
      {"stat_statements", false},
      {"stat_user_tables", true},
      {"stat_wal_receiver", false},
      {"statio_user_indexes", false},
      {"statio_user_tables", true},
      {"wal", true},
      {"xlog_location", false},
  };
  return names;
}

void DefineExporterFlags(CLI::App& app, ExporterFlags& f) {
  const std::string group = "postgres_exporter's flags";
  auto env = [](CLI::Option* o, const char* name) { return o->envname(name)->group("postgres_exporter's flags"); };
  env(app.add_flag("--disable-default-metrics", f.disable_default_metrics,
                   "postgres_exporter profile: leave out its built-in metrics (pg_static, "
                   "pg_stat_database_conflicts_*)"),
      "PG_EXPORTER_DISABLE_DEFAULT_METRICS");
  env(app.add_flag("--disable-settings-metrics", f.disable_settings_metrics,
                   "postgres_exporter profile: leave out pg_settings_*"),
      "PG_EXPORTER_DISABLE_SETTINGS_METRICS");
  env(app.add_flag("--auto-discover-databases", f.auto_discover_databases,
                   "Run database-scoped collectors in every database (the environment's target; a config file sets "
                   "targets[].databases.discover)"),
      "PG_EXPORTER_AUTO_DISCOVER_DATABASES");
  env(app.add_option("--include-databases", f.include_databases, "Databases to discover, comma-separated"),
      "PG_EXPORTER_INCLUDE_DATABASES");
  env(app.add_option("--exclude-databases", f.exclude_databases, "Databases not to discover, comma-separated"),
      "PG_EXPORTER_EXCLUDE_DATABASES");
  env(app.add_option("--constantLabels", f.constant_labels, "Labels on every sample: name=value,name=value"),
      "PG_EXPORTER_CONSTANT_LABELS");
  env(app.add_option("--extend.query-path", f.extend_query_path, "postgres_exporter's custom queries file"),
      "PG_EXPORTER_EXTEND_QUERY_PATH");
  env(app.add_option("--metric-prefix", f.metric_prefix, "Metric prefix; only pg is served"),
      "PG_EXPORTER_METRIC_PREFIX");
  env(app.add_option("--collection-timeout", f.collection_timeout,
                     "Cap on a scrape's collection (e.g. 1m); default: the config's scrape.timeout"),
      "PG_EXPORTER_COLLECTION_TIMEOUT");
  app.add_flag("--web.systemd-socket", f.systemd_socket, "Not supported (systemd socket activation)")->group(group);
  app.add_flag("--dumpmaps", f.dump_maps, "Print the postgres_exporter profile's metric maps and exit")->group(group);
  for (const auto& [name, on_by_default] : ExporterCollectorNames()) {
    const std::string n = name;
    auto set = [&f, n](bool on) {
      auto [it, inserted] = f.collectors.emplace(n, on);
      if (!inserted && it->second != on)
        throw CLI::ValidationError("--collector." + n, "given with --no-collector." + n + "; say one");
    };
    app.add_flag_callback(
           "--collector." + n, [set] { set(true); },
           "postgres_exporter profile: run its " + n + " collector" + (on_by_default ? " (default)" : ""))
        ->group(group);
    app.add_flag_callback(
           "--no-collector." + n, [set] { set(false); }, "")
        ->group(group);
  }
  const std::string statements = "--collector.stat_statements.";
  app.add_flag_callback(
         statements + "include_query", [&f] { f.statements_include_query = "true"; },
         "stat_statements: serve pg_stat_statements_query_id{queryid, query}")
      ->group(group);
  app.add_flag_callback(
         "--no-collector.stat_statements.include_query", [&f] { f.statements_include_query = "false"; }, "")
      ->group(group);
  app.add_option(statements + "query_length", f.statements_query_length,
                 "stat_statements: characters of query text (default 120)")
      ->group(group);
  app.add_option(statements + "limit", f.statements_limit, "stat_statements: statements kept (default 100)")
      ->group(group);
  app.add_option(statements + "exclude_databases", f.statements_exclude_databases,
                 "stat_statements: databases left out, comma-separated")
      ->group(group);
  app.add_option(statements + "exclude_users", f.statements_exclude_users,
                 "stat_statements: users left out, comma-separated")
      ->group(group);
}

namespace {

// A whole number from 1 to `max` given to `flag`, or an error naming it.
std::optional<size_t> PositiveFlag(const std::string& flag, const std::string& text, size_t max,
                                   std::vector<std::string>& errors) {
  size_t value = 0;
  bool ok = !text.empty() && text.size() <= 9;
  for (char c : text) ok = ok && std::isdigit(static_cast<unsigned char>(c));
  if (ok) value = std::stoul(text);
  if (!ok || value < 1 || value > max) {
    errors.push_back(flag + ": must be a whole number from 1 to " + std::to_string(max) + ", got '" + text + "'");
    return std::nullopt;
  }
  return value;
}

// Names that go into SQL as string literals; a backslash would mean something else where
// standard_conforming_strings is off, so it is refused rather than guessed at.
std::vector<std::string> SqlNames(const std::string& flag, const std::string& text, std::vector<std::string>& errors) {
  std::vector<std::string> names = SplitList(text);
  for (const std::string& n : names) {
    if (n.find('\\') != std::string::npos || n.find('\0') != std::string::npos)
      errors.push_back(flag + ": '" + n + "' holds a backslash or NUL, which is not served");
  }
  return names;
}

StatStatementsOptions StatStatementsFrom(const ExporterFlags& f, std::vector<std::string>& errors) {
  StatStatementsOptions o;
  const std::string flag = "--collector.stat_statements.";
  o.given = !f.statements_include_query.empty() || !f.statements_query_length.empty() || !f.statements_limit.empty() ||
            !f.statements_exclude_databases.empty() || !f.statements_exclude_users.empty();
  o.include_query = f.statements_include_query == "true";
  if (!f.statements_query_length.empty()) {
    if (auto v = PositiveFlag(flag + "query_length", f.statements_query_length, 100000, errors)) o.query_length = *v;
  }
  if (!f.statements_limit.empty()) {
    if (auto v = PositiveFlag(flag + "limit", f.statements_limit, 1000000, errors)) o.limit = *v;
  }
  o.exclude_databases = SqlNames(flag + "exclude_databases", f.statements_exclude_databases, errors);
  o.exclude_users = SqlNames(flag + "exclude_users", f.statements_exclude_users, errors);
  return o;
}

// An array literal of `names` for SQL, quotes doubled.
std::string SqlTextArray(const std::vector<std::string>& names) {
  if (names.empty()) return "'{}'::text[]";
  std::string out = "ARRAY[";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ", ";
    out += "'";
    for (char c : names[i]) out += c == '\'' ? std::string("''") : std::string(1, c);
    out += "'";
  }
  return out + "]::text[]";
}

// Replaces every `marker` in `sql` by `value`; false when there is none.
bool ReplaceMarker(std::string& sql, const std::string& marker, const std::string& value) {
  bool found = false;
  for (size_t at = sql.find(marker); at != std::string::npos; at = sql.find(marker, at + value.size())) {
    sql.replace(at, marker.size(), value);
    found = true;
  }
  return found;
}

}  // namespace

void ApplyStatStatementsOptions(const StatStatementsOptions& options, collectors::Definition& def,
                                std::vector<std::string>& errors) {
  if (def.name != "pe_stat_statements" && def.name != "pe_stat_statements__query") return;
  def.max_rows = options.limit;
  const bool texts = def.name == "pe_stat_statements__query";
  struct Fill {
    std::string marker, value;
    bool required;  // every variant must have the marker
  };
  const std::vector<Fill> fills{
      {"'{}'::text[] /* exclude_databases */", SqlTextArray(options.exclude_databases), true},
      {"'{}'::text[] /* exclude_users */", SqlTextArray(options.exclude_users), true},
      {"120 /* query_length */", std::to_string(options.query_length), texts},
  };
  for (auto& variant : def.variants) {
    for (const auto& [marker, value, required] : fills) {
      if (!ReplaceMarker(variant.sql, marker, value) && required)
        errors.push_back(def.origin + ": " + def.name + ": its SQL lacks `" + marker +
                         "`, where --collector.stat_statements.* is filled in");
    }
  }
}

void ApplyExporterFlags(const ExporterFlags& f, Config& cfg, std::vector<std::string>& errors) {
  cfg.exporter.default_metrics = !f.disable_default_metrics;
  cfg.exporter.settings_metrics = !f.disable_settings_metrics;
  cfg.exporter.collectors = f.collectors;
  if (f.metric_prefix != "pg")
    errors.push_back("--metric-prefix (PG_EXPORTER_METRIC_PREFIX): only 'pg' is served, got '" + f.metric_prefix +
                     "' (dashboards and rules built on postgres_exporter expect pg_)");
  if (f.systemd_socket)
    errors.push_back("--web.systemd-socket: systemd socket activation is not supported; give --web.listen-address");
  if (!f.extend_query_path.empty()) cfg.exporter.queries = TranslateQueriesFile(f.extend_query_path, errors);
  cfg.exporter.stat_statements = StatStatementsFrom(f, errors);
  if (!f.collection_timeout.empty()) {
    auto d = collectors::ParseDuration(f.collection_timeout);
    if (!d || d->count() <= 0)
      errors.push_back("--collection-timeout (PG_EXPORTER_COLLECTION_TIMEOUT): not a duration: '" +
                       f.collection_timeout + "' (e.g. 30s, 1m)");
    else cfg.scrape_timeout = *d;
  }

  std::vector<std::pair<std::string, std::string>> labels;
  for (const std::string& pair : SplitList(f.constant_labels)) {
    size_t eq = pair.find('=');
    std::string key = Trimmed(pair.substr(0, eq)), value = eq == std::string::npos ? "" : Trimmed(pair.substr(eq + 1));
    if (eq == std::string::npos || !collectors::ValidLabelName(key))
      errors.push_back("--constantLabels (PG_EXPORTER_CONSTANT_LABELS): '" + pair + "' is not name=value");
    else if (key == "target" || key == "datname")
      errors.push_back("--constantLabels (PG_EXPORTER_CONSTANT_LABELS): label '" + key + "' is set by the agent");
    else labels.emplace_back(key, value);
  }
  const bool discovery = f.auto_discover_databases || !f.include_databases.empty() || !f.exclude_databases.empty();
  if (!cfg.targets_from_environment) {
    if (discovery)
      errors.push_back(cfg.origin +
                       " names targets: set databases.discover, include and exclude per target there, "
                       "not with --auto-discover-databases, --include-databases or --exclude-databases");
    if (!labels.empty())
      errors.push_back(cfg.origin + " names targets: set labels per target there, not with --constantLabels");
    return;
  }
  // As postgres_exporter: include and exclude choose among discovered databases.
  if (discovery && !f.auto_discover_databases)
    LogWarn(
        "--include-databases and --exclude-databases choose among discovered databases; without "
        "--auto-discover-databases they change nothing");
  for (TargetConfig& tc : cfg.targets) {
    tc.labels.insert(tc.labels.end(), labels.begin(), labels.end());
    if (!f.auto_discover_databases) continue;
    tc.databases.enabled = true;
    for (const std::string& db : SplitList(f.include_databases)) tc.databases.include.push_back(ExactName(db));
    for (const std::string& db : SplitList(f.exclude_databases)) tc.databases.exclude.push_back(ExactName(db));
  }
}

int PrintExporterMaps(std::ostream& out, std::ostream& err) {
  collectors::LoadResult defs = collectors::LoadDefinitions(collectors::EmbeddedPostgresExporterDefinitions());
  for (const auto& e : defs.errors) err << "error: " << e << "\n";
  if (!defs.ok()) return 1;
  for (const auto& d : defs.definitions) {
    std::string collector =
        d.name.substr(3, d.name.find("__", 3) == std::string::npos ? std::string::npos : d.name.find("__", 3) - 3);
    out << d.name << " (" << (collector == "exporter" ? "built-in metrics" : "collector " + collector)
        << (d.enabled ? "" : ", off by default") << ", "
        << (d.scope == collectors::Scope::Database ? "every database" : "server") << ")\n";
    if (d.info)
      out << "  " << std::left << std::setw(32) << "(every row)" << std::setw(10) << "GAUGE" << d.info->metric << "\n";
    for (const auto& c : d.columns) {
      std::string usage, what;
      switch (c.usage) {
        case collectors::ColumnUsage::Label: usage = "LABEL", what = c.label; break;
        case collectors::ColumnUsage::Gauge: usage = "GAUGE", what = c.metric; break;
        case collectors::ColumnUsage::Counter: usage = "COUNTER", what = c.metric; break;
        case collectors::ColumnUsage::Untyped: usage = "UNTYPED", what = c.metric; break;
        case collectors::ColumnUsage::NameSuffix: usage = "NAME", what = c.metric + "<value>"; break;
        case collectors::ColumnUsage::AddTo: usage = "ADD", what = c.add_to; break;
        default: usage = "DISCARD"; break;
      }
      out << "  " << std::left << std::setw(32) << c.name << std::setw(10) << usage << what << "\n";
    }
    out << "\n";
  }
  return 0;
}

}  // namespace pgpulse::agent
