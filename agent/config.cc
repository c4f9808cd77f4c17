#include "agent/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "collectors/definition.h"
#include "collectors/yaml_reader.h"

namespace pgpulse::agent {

namespace {

using collectors::YamlReader;

// Fills `into` when `node` is a duration; reports it otherwise.
void ReadDuration(YamlReader& r, const YAML::Node& node, const std::string& what, Millis& into) {
  if (auto d = r.Duration(node, what)) into = *d;
}

std::string Str(YamlReader& r, const YAML::Node& node, const std::string& what) {
  return r.String(node, what).value_or("");
}

// pgBackRest stanza names: letters, digits, '-', '_' and '.'; option names likewise, lower case.
bool ValidStanza(const std::string& s) {
  return !s.empty() && s.size() <= 64 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == std::string::npos;
}

void ParseBackrest(const YAML::Node& b, YamlReader& r, const std::string& ctx, BackrestConfig& into) {
  if (!r.Map(b, ctx, {"command", "stanza", "config", "args", "timeout", "ttl"})) return;
  BackrestConfig bc;
  if (!b["command"]) {
    r.Error(b, ctx + ": missing required key 'command' (e.g. /usr/bin/pgbackrest)");
  } else {
    bc.command = Str(r, b["command"], ctx + ".command");
    if (bc.command.empty() || bc.command[0] != '/')
      r.Error(b["command"],
              ctx + ".command must be an absolute path (it is run directly, not through a shell or PATH)");
  }
  if (!b["stanza"]) {
    r.Error(b, ctx + ": missing required key 'stanza'");
  } else {
    bc.stanza = Str(r, b["stanza"], ctx + ".stanza");
    if (!ValidStanza(bc.stanza))
      r.Error(b["stanza"], ctx + ".stanza '" + bc.stanza + "' may only use letters, digits, '_', '-' and '.'");
  }
  if (b["config"]) {
    bc.config = Str(r, b["config"], ctx + ".config");
    if (bc.config.empty() || bc.config[0] != '/') r.Error(b["config"], ctx + ".config must be an absolute path");
  }
  if (const YAML::Node a = b["args"]) {
    bc.args = r.StringList(a, ctx + ".args").value_or(std::vector<std::string>{});
    for (size_t i = 0; i < bc.args.size(); ++i) {
      const std::string& arg = bc.args[i];
      std::string name = arg.substr(0, arg.find('='));
      if (name.size() < 3 || name.compare(0, 2, "--") != 0 ||
          name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-", 2) != std::string::npos)
        r.Error(a[i], ctx + ".args: '" + arg + "' is not an option like --repo=1");
      else if (name == "--stanza" || name == "--config" || name == "--output")
        r.Error(a[i], ctx + ".args: " + name + " is set by the agent (use the '" + name.substr(2) + "' key)");
    }
  }
  if (b["timeout"]) {
    ReadDuration(r, b["timeout"], ctx + ".timeout", bc.timeout);
    if (bc.timeout.count() <= 0) r.Error(b["timeout"], ctx + ".timeout must be more than 0");
  }
  if (b["ttl"]) ReadDuration(r, b["ttl"], ctx + ".ttl", bc.ttl);
  into = bc;
}

// Where /probe may send a module's credentials: required, so that no module reaches any address a caller names.
void ParseAllowedTargets(const YAML::Node& m, YamlReader& r, const std::string& ctx, AuthModule& mod) {
  const YAML::Node list = m["allowed_targets"];
  if (!list) {
    r.Error(m, ctx +
                   ": missing required key 'allowed_targets' (the hosts, networks and ports /probe may "
                   "send this module's credentials to, e.g. [10.0.0.0/8:5432, db7.example])");
    return;
  }
  if (!list.IsSequence()) {
    r.Error(list, ctx + ".allowed_targets must be a list of hosts, networks and ports");
    return;
  }
  if (list.size() == 0) r.Error(list, ctx + ".allowed_targets must not be empty");
  for (const YAML::Node& item : list) {
    std::string error;
    auto a = ParseAllowedTarget(Str(r, item, ctx + ".allowed_targets item"), error);
    if (!a) r.Error(item, ctx + ".allowed_targets: " + error);
    else mod.allowed_targets.push_back(*a);
  }
}

// password_file or password_command (an argv with an absolute program path) and its timeout.
template <class Into>
void ParsePasswordSource(const YAML::Node& m, YamlReader& r, const std::string& ctx, Into& into) {
  if (m["password_file"]) into.password_file = Str(r, m["password_file"], ctx + ".password_file");
  if (const YAML::Node c = m["password_command"]) {
    into.password_command = r.StringList(c, ctx + ".password_command").value_or(std::vector<std::string>{});
    if (c.IsSequence() &&
        (into.password_command.empty() || into.password_command[0].empty() || into.password_command[0][0] != '/'))
      r.Error(c, ctx +
                     ".password_command must be a list whose first item is an absolute program path "
                     "(it is run without a shell), e.g. [/usr/bin/aws, rds, generate-db-auth-token, ...]");
    if (m["password_file"]) r.Error(c, ctx + ": set password_file or password_command, not both");
  }
  if (const YAML::Node t = m["password_command_timeout"]) {
    if (!m["password_command"]) r.Error(t, ctx + ".password_command_timeout needs password_command");
    ReadDuration(r, t, ctx + ".password_command_timeout", into.password_command_timeout);
  }
}

void ParseAuthModule(const std::string& name, const YAML::Node& m, YamlReader& r, Config& cfg) {
  const std::string ctx = "auth_modules." + name;
  if (!r.Map(m, ctx,
             {"user", "password_file", "password_command", "password_command_timeout", "options", "allowed_targets",
              "allow_unverified_server"}))
    return;
  AuthModule mod;
  if (!m["user"]) r.Error(m, ctx + ": missing required key 'user'");
  else mod.user = Str(r, m["user"], ctx + ".user");
  ParsePasswordSource(m, r, ctx, mod);
  if (const YAML::Node o = m["options"]) {
    if (!o.IsMap()) {
      r.Error(o, ctx + ".options must map libpq keywords to values");
    } else {
      for (auto it = o.begin(); it != o.end(); ++it) {
        std::string key = Str(r, it->first, ctx + ".options key");
        if (key == "host" || key == "hostaddr" || key == "port" || key == "user" || key == "password" ||
            key == "passfile")
          r.Error(it->first, ctx + ".options: '" + key + "' comes from the probe request or the module's own keys");
        mod.options.emplace_back(key, Str(r, it->second, ctx + ".options." + key));
      }
    }
  }
  ParseAllowedTargets(m, r, ctx, mod);
  if (const YAML::Node u = m["allow_unverified_server"])
    mod.allow_unverified_server = r.Bool(u, ctx + ".allow_unverified_server").value_or(false);
  std::string sslmode;
  for (const auto& [k, v] : mod.options) {
    if (k == "sslmode") sslmode = v;
  }
  if (!mod.allow_unverified_server && sslmode != "verify-ca" && sslmode != "verify-full")
    r.Error(m, ctx + ": options.sslmode is '" + (sslmode.empty() ? "prefer (the default)" : sslmode) +
                   "': the credentials could go in the clear or to a server that has not proved who it is; "
                   "use sslmode verify-full (or verify-ca), or set allow_unverified_server: true");
  cfg.auth_modules[name] = mod;
}

void ParseAuthModules(const YAML::Node& am, YamlReader& r, Config& cfg) {
  if (!am.IsMap()) {
    r.Error(am, "auth_modules must map module names to credentials");
    return;
  }
  for (auto it = am.begin(); it != am.end(); ++it)
    ParseAuthModule(Str(r, it->first, "auth module name"), it->second, r, cfg);
}

void ParseDatabases(const YAML::Node& d, YamlReader& r, const std::string& ctx, DatabaseDiscovery& dd) {
  if (!r.Map(d, ctx, {"discover", "include", "exclude", "refresh", "max_connections"})) return;
  if (const YAML::Node v = d["discover"]) dd.enabled = r.Bool(v, ctx + ".discover").value_or(dd.enabled);
  for (const char* key : {"include", "exclude"}) {
    if (!d[key]) continue;
    auto list = r.StringList(d[key], ctx + "." + key).value_or(std::vector<std::string>{});
    for (size_t i = 0; i < list.size(); ++i) {
      try {
        std::regex check(list[i]);
      } catch (const std::regex_error& e) {
        r.Error(d[key][i], ctx + "." + key + ": invalid regex '" + list[i] + "': " + e.what());
      }
    }
    (std::string(key) == "include" ? dd.include : dd.exclude) = list;
  }
  if (d["refresh"]) ReadDuration(r, d["refresh"], ctx + ".refresh", dd.refresh);
  if (d["max_connections"]) {
    dd.max_connections = r.Count(d["max_connections"], ctx + ".max_connections").value_or(1);
    if (dd.max_connections < 2) r.Error(d["max_connections"], ctx + ".max_connections must be at least 2");
  }
}

void ParseFilesystem(const YAML::Node& f, YamlReader& r, const std::string& ctx, FilesystemVisibility& into) {
  if (!r.Map(f, ctx, {"visible", "path_prefix"})) return;
  if (const YAML::Node v = f["visible"]) {
    // YAML 1.1 reads yes/no as booleans; yaml-cpp keeps the text, so accept both spellings.
    std::string s = v.IsScalar() ? v.Scalar() : "";
    if (s == "auto") into.mode = FilesystemVisibility::Mode::Auto;
    else if (s == "yes" || s == "true") into.mode = FilesystemVisibility::Mode::Yes;
    else if (s == "no" || s == "false") into.mode = FilesystemVisibility::Mode::No;
    else r.Error(v, ctx + ".visible must be auto, yes or no");
  }
  if (const YAML::Node p = f["path_prefix"]) {
    std::string& prefix = into.path_prefix;
    prefix = Str(r, p, ctx + ".path_prefix");
    if (!prefix.empty() && prefix[0] != '/')
      r.Error(p, ctx + ".path_prefix must be an absolute path, got '" + prefix + "'");
    while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
    if (prefix == "/") prefix.clear();
  }
}

void ParseLabels(const YAML::Node& l, YamlReader& r, TargetConfig& tc) {
  if (!l.IsMap()) {
    r.Error(l, "target '" + tc.name + "'.labels must map label names to values");
    return;
  }
  for (auto it = l.begin(); it != l.end(); ++it) {
    std::string key = Str(r, it->first, "label name");
    std::string value = Str(r, it->second, "label '" + key + "'");
    if (!collectors::ValidLabelName(key))
      r.Error(it->first, "target '" + tc.name + "': invalid label name '" + key + "'");
    else if (key == "target" || key == "datname")
      r.Error(it->first, "target '" + tc.name + "': label '" + key + "' is set by the agent");
    else if (tc.pgbackrest.enabled() && (key == "stanza" || key == "type"))
      r.Error(it->first, "target '" + tc.name + "': label '" + key + "' is set by the pgbackrest collector");
    else if (!tc.backup_files.empty() && (key == "set" || key == "path" || key == "reason"))
      r.Error(it->first, "target '" + tc.name + "': label '" + key + "' is set by backup_files");
    tc.labels.emplace_back(key, value);
  }
}

void ParseTarget(const YAML::Node& t, YamlReader& r, std::set<std::string>& names, Config& cfg) {
  if (!r.Map(t, "target",
             {"name", "dsn", "password_file", "password_command", "password_command_timeout", "labels", "databases",
              "type", "pgbackrest", "filesystem", "backup_files", "prepared_statements", "logs"}))
    return;
  TargetConfig tc;
  if (!t["name"]) r.Error(t, "target: missing required key 'name'");
  else tc.name = Str(r, t["name"], "target.name");
  const std::string ctx = "target '" + tc.name + "'";
  if (t["dsn"]) tc.dsn = Str(r, t["dsn"], ctx + ".dsn");
  ParsePasswordSource(t, r, ctx, tc);
  if (const YAML::Node ty = t["type"]) {
    tc.type = Str(r, ty, ctx + ".type");
    if (ty.IsScalar() && tc.type != "postgres" && tc.type != "pgbouncer")
      r.Error(ty, ctx + ".type must be 'postgres' or 'pgbouncer', got '" + tc.type + "'");
    if (tc.type == "pgbouncer" && t["databases"])
      r.Error(t["databases"],
              ctx + ": databases (discovery) applies to PostgreSQL targets, not to a pgbouncer console");
  }
  if (const YAML::Node d = t["databases"]) ParseDatabases(d, r, ctx + ".databases", tc.databases);
  if (const YAML::Node ps = t["prepared_statements"])
    tc.prepared_statements = r.Bool(ps, ctx + ".prepared_statements").value_or(tc.prepared_statements);
  if (const YAML::Node b = t["pgbackrest"]) ParseBackrest(b, r, ctx + ".pgbackrest", tc.pgbackrest);
  if (const YAML::Node f = t["filesystem"]) ParseFilesystem(f, r, ctx + ".filesystem", tc.filesystem);
  if (const YAML::Node bf = t["backup_files"]) ParseBackupFileSets(bf, r, ctx + ".backup_files", tc.backup_files);
  if (const YAML::Node l = t["labels"]) ParseLabels(l, r, tc);
  if (const YAML::Node lg = t["logs"]) sources::ParseLogsConfig(lg, r, ctx + ".logs", tc.logs);
  if (!tc.name.empty() && tc.name.find_first_not_of(
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != std::string::npos)
    r.Error(t["name"], "target name '" + tc.name + "' may only use letters, digits, '_', '-' and '.'");
  if (!tc.name.empty() && !names.insert(tc.name).second)
    r.Error(t["name"], "target name '" + tc.name + "' is used twice");
  cfg.targets.push_back(tc);
}

void ParseTargets(const YAML::Node& targets, YamlReader& r, Config& cfg) {
  if (!targets.IsSequence()) {
    r.Error(targets, "targets must be a list");
    return;
  }
  std::set<std::string> names;
  for (const YAML::Node& t : targets) ParseTarget(t, r, names, cfg);
}

void ParseOverride(const std::string& name, const YAML::Node& key, const YAML::Node& v, YamlReader& r, Config& cfg) {
  const std::string ctx = "collectors.overrides." + name;
  CollectorOverride ov;
  ov.where = r.Where(key);
  if (!r.Map(v, ctx, {"ttl", "timeout", "max_series", "max_rows"})) return;
  Millis d{0};
  if (v["ttl"]) {
    ReadDuration(r, v["ttl"], ctx + ".ttl", d);
    ov.ttl = d;
  }
  if (v["timeout"]) {
    ReadDuration(r, v["timeout"], ctx + ".timeout", d);
    if (d.count() <= 0) r.Error(v["timeout"], ctx + ".timeout must be more than 0");
    ov.timeout = d;
  }
  if (v["max_series"]) ov.max_series = r.Count(v["max_series"], ctx + ".max_series").value_or(1);
  if (v["max_rows"]) ov.max_rows = r.Count(v["max_rows"], ctx + ".max_rows").value_or(1);
  cfg.overrides[name] = ov;
}

void ParseCollectors(const YAML::Node& c, YamlReader& r, Config& cfg) {
  if (!r.Map(c, "collectors", {"directories", "disable", "enable", "overrides"})) return;
  if (c["directories"])
    cfg.definition_dirs = r.StringList(c["directories"], "collectors.directories").value_or(std::vector<std::string>{});
  if (c["disable"]) {
    for (auto& n : r.StringList(c["disable"], "collectors.disable").value_or(std::vector<std::string>{}))
      cfg.disabled_collectors.insert(n);
  }
  if (c["enable"]) {
    for (auto& n : r.StringList(c["enable"], "collectors.enable").value_or(std::vector<std::string>{}))
      cfg.enabled_collectors.insert(n);
  }
  if (const YAML::Node o = c["overrides"]) {
    if (!o.IsMap()) {
      r.Error(o, "collectors.overrides must map collector names to settings");
      return;
    }
    for (auto it = o.begin(); it != o.end(); ++it)
      ParseOverride(Str(r, it->first, "collectors.overrides key"), it->first, it->second, r, cfg);
  }
}

void ParseScrape(const YAML::Node& s, YamlReader& r, Config& cfg) {
  if (!r.Map(s, "scrape", {"timeout", "timeout_offset", "collect_on_metrics_path"})) return;
  if (const YAML::Node c = s["collect_on_metrics_path"])
    cfg.collect_on_metrics_path = r.Bool(c, "scrape.collect_on_metrics_path").value_or(cfg.collect_on_metrics_path);
  if (s["timeout"]) ReadDuration(r, s["timeout"], "scrape.timeout", cfg.scrape_timeout);
  if (s["timeout_offset"]) ReadDuration(r, s["timeout_offset"], "scrape.timeout_offset", cfg.timeout_offset);
  if (cfg.scrape_timeout.count() <= 0) r.Error(s["timeout"], "scrape.timeout must be more than 0");
}

void ParseConfig(const YAML::Node& root, YamlReader& r, Config& cfg) {
  if (root.IsNull()) return;
  if (!r.Map(root, "config",
             {"targets", "collectors", "scrape", "connect_timeout", "auth_modules", "max_probe_targets",
              "metrics_profile"}))
    return;
  if (const YAML::Node p = root["metrics_profile"]) {
    if (auto text = r.String(p, "metrics_profile")) {
      if (auto profile = ParseMetricsProfile(*text)) cfg.metrics_profile = *profile;
      else r.Error(p, "metrics_profile: must be pgpulse, postgres_exporter or both, got '" + *text + "'");
    }
  }
  if (const YAML::Node am = root["auth_modules"]) ParseAuthModules(am, r, cfg);
  if (root["max_probe_targets"])
    cfg.max_probe_targets = r.Count(root["max_probe_targets"], "max_probe_targets").value_or(1);
  if (const YAML::Node targets = root["targets"]) ParseTargets(targets, r, cfg);
  if (const YAML::Node c = root["collectors"]) ParseCollectors(c, r, cfg);
  if (const YAML::Node s = root["scrape"]) ParseScrape(s, r, cfg);
  if (root["connect_timeout"]) ReadDuration(r, root["connect_timeout"], "connect_timeout", cfg.connect_timeout);
}

}  // namespace

TargetConfig DefaultTarget(const std::string& data_source_name, const std::string& password_file) {
  TargetConfig tc;
  tc.name = "default";
  tc.dsn = data_source_name;
  tc.password_file = password_file;
  return tc;
}

ConfigResult LoadConfigText(const std::string& text, const std::string& origin, const std::string& data_source_name,
                            const std::string& password_file) {
  ConfigResult result;
  Config& cfg = result.config;
  cfg.origin = origin;
  YamlReader r(origin, result.errors);
  if (std::optional<YAML::Node> root = r.Load(text)) ParseConfig(*root, r, cfg);
  if (cfg.targets.empty()) {
    cfg.targets.push_back(DefaultTarget(data_source_name, password_file));
    cfg.targets_from_environment = true;
  }
  return result;
}

ConfigResult LoadConfig(const std::string& path, const std::string& data_source_name,
                        const std::string& password_file) {
  if (path.empty()) {
    ConfigResult result;
    result.config.targets.push_back(DefaultTarget(data_source_name, password_file));
    result.config.targets_from_environment = true;
    return result;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigResult result;
    result.config.origin = path;
    result.errors.push_back(path + ": cannot read config file: " + std::strerror(errno));
    return result;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return LoadConfigText(ss.str(), path, data_source_name, password_file);
}

}  // namespace pgpulse::agent
