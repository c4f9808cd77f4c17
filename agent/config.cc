#include "agent/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "collectors/definition.h"

namespace pgpulse::agent {

namespace {

class ConfigReader {
 public:
  ConfigReader(std::string origin, std::vector<std::string>& errors) : origin_(std::move(origin)), errors_(errors) {}

  std::string Where(const YAML::Node& n) const {
    YAML::Mark m = n.Mark();
    std::string where = origin_;
    if (!m.is_null()) where += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
    return where;
  }
  void Error(const YAML::Node& n, const std::string& what) { errors_.push_back(Where(n) + ": " + what); }

  // A positive whole number.
  size_t Count(const YAML::Node& n, const std::string& ctx) {
    if (n.IsScalar()) {
      const std::string& s = n.Scalar();
      if (!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos && std::stoul(s) > 0)
        return std::stoul(s);
    }
    Error(n, ctx + " must be a whole number of at least 1");
    return 1;
  }

  bool Map(const YAML::Node& n, const std::string& ctx, std::initializer_list<const char*> allowed) {
    if (!n.IsMap()) {
      Error(n, ctx + " must be a map");
      return false;
    }
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string key = it->first.IsScalar() ? it->first.Scalar() : "?";
      if (!seen.insert(key).second) Error(it->first, ctx + ": key '" + key + "' is given twice");
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        Error(it->first, ctx + ": unknown key '" + key + "' (allowed: " + list + ")");
      }
    }
    return true;
  }

  std::string Str(const YAML::Node& n, const std::string& ctx) {
    if (!n.IsScalar()) {
      Error(n, ctx + " must be a string");
      return "";
    }
    return n.Scalar();
  }

  std::vector<std::string> StrList(const YAML::Node& n, const std::string& ctx) {
    std::vector<std::string> out;
    if (!n.IsSequence()) {
      Error(n, ctx + " must be a list of strings");
      return out;
    }
    for (const YAML::Node& item : n) out.push_back(Str(item, ctx + " item"));
    return out;
  }

  void Duration(const YAML::Node& n, const std::string& ctx, Millis& into) {
    auto d = n.IsScalar() ? collectors::ParseDuration(n.Scalar()) : std::nullopt;
    if (!d) Error(n, ctx + " must be a duration like 500ms, 10s or 1m");
    else into = *d;
  }

 private:
  std::string origin_;
  std::vector<std::string>& errors_;
};

// pgBackRest stanza names: letters, digits, '-', '_' and '.'; option names likewise, lower case.
bool ValidStanza(const std::string& s) {
  return !s.empty() && s.size() <= 64 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == std::string::npos;
}

void ParseBackrest(const YAML::Node& b, ConfigReader& r, const std::string& ctx, BackrestConfig& into) {
  if (!r.Map(b, ctx, {"command", "stanza", "config", "args", "timeout", "ttl"})) return;
  BackrestConfig bc;
  if (!b["command"]) {
    r.Error(b, ctx + ": missing required key 'command' (e.g. /usr/bin/pgbackrest)");
  } else {
    bc.command = r.Str(b["command"], ctx + ".command");
    if (bc.command.empty() || bc.command[0] != '/')
      r.Error(b["command"], ctx + ".command must be an absolute path (it is run directly, not through a shell or PATH)");
  }
  if (!b["stanza"]) {
    r.Error(b, ctx + ": missing required key 'stanza'");
  } else {
    bc.stanza = r.Str(b["stanza"], ctx + ".stanza");
    if (!ValidStanza(bc.stanza))
      r.Error(b["stanza"], ctx + ".stanza '" + bc.stanza + "' may only use letters, digits, '_', '-' and '.'");
  }
  if (b["config"]) {
    bc.config = r.Str(b["config"], ctx + ".config");
    if (bc.config.empty() || bc.config[0] != '/') r.Error(b["config"], ctx + ".config must be an absolute path");
  }
  if (const YAML::Node a = b["args"]) {
    bc.args = r.StrList(a, ctx + ".args");
    for (size_t i = 0; i < bc.args.size() && a.IsSequence(); ++i) {
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
    r.Duration(b["timeout"], ctx + ".timeout", bc.timeout);
    if (bc.timeout.count() <= 0) r.Error(b["timeout"], ctx + ".timeout must be more than 0");
  }
  if (b["ttl"]) r.Duration(b["ttl"], ctx + ".ttl", bc.ttl);
  into = bc;
}

void ParseConfig(const YAML::Node& root, ConfigReader& r, Config& cfg) {
  if (root.IsNull()) return;
  if (!r.Map(root, "config", {"targets", "collectors", "scrape", "connect_timeout", "auth_modules", "max_probe_targets"}))
    return;
  if (const YAML::Node am = root["auth_modules"]) {
    if (!am.IsMap()) {
      r.Error(am, "auth_modules must map module names to credentials");
    } else {
      for (auto it = am.begin(); it != am.end(); ++it) {
        std::string name = r.Str(it->first, "auth module name");
        std::string ctx = "auth_modules." + name;
        const YAML::Node m = it->second;
        if (!r.Map(m, ctx, {"user", "password_file", "options", "allowed_targets", "allow_unverified_server"}))
          continue;
        AuthModule mod;
        if (!m["user"]) r.Error(m, ctx + ": missing required key 'user'");
        else mod.user = r.Str(m["user"], ctx + ".user");
        if (m["password_file"]) mod.password_file = r.Str(m["password_file"], ctx + ".password_file");
        if (const YAML::Node o = m["options"]) {
          if (!o.IsMap()) {
            r.Error(o, ctx + ".options must map libpq keywords to values");
          } else {
            for (auto oit = o.begin(); oit != o.end(); ++oit) {
              std::string key = r.Str(oit->first, ctx + ".options key");
              if (key == "host" || key == "hostaddr" || key == "port" || key == "user" || key == "password" ||
                  key == "passfile")
                r.Error(oit->first, ctx + ".options: '" + key + "' comes from the probe request or the module's own keys");
              mod.options.emplace_back(key, r.Str(oit->second, ctx + ".options." + key));
            }
          }
        }
        if (!m["allowed_targets"]) {
          r.Error(m, ctx + ": missing required key 'allowed_targets' (the hosts, networks and ports /probe may "
                           "send this module's credentials to, e.g. [10.0.0.0/8:5432, db7.example])");
        } else {
          const YAML::Node list = m["allowed_targets"];
          if (list.IsSequence() && list.size() == 0) r.Error(list, ctx + ".allowed_targets must not be empty");
          if (list.IsSequence()) {
            for (const YAML::Node& item : list) {
              std::string error;
              auto a = ParseAllowedTarget(r.Str(item, ctx + ".allowed_targets item"), error);
              if (!a) r.Error(item, ctx + ".allowed_targets: " + error);
              else mod.allowed_targets.push_back(*a);
            }
          } else {
            r.Error(list, ctx + ".allowed_targets must be a list of hosts, networks and ports");
          }
        }
        if (const YAML::Node u = m["allow_unverified_server"]) {
          if (!u.IsScalar() || (u.Scalar() != "true" && u.Scalar() != "false"))
            r.Error(u, ctx + ".allow_unverified_server must be true or false");
          else mod.allow_unverified_server = u.Scalar() == "true";
        }
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
    }
  }
  if (root["max_probe_targets"]) cfg.max_probe_targets = r.Count(root["max_probe_targets"], "max_probe_targets");
  if (const YAML::Node targets = root["targets"]) {
    if (!targets.IsSequence()) {
      r.Error(targets, "targets must be a list");
    } else {
      std::set<std::string> names;
      for (const YAML::Node& t : targets) {
        if (!r.Map(t, "target", {"name", "dsn", "password_file", "labels", "databases", "type", "pgbackrest",
                                 "filesystem", "prepared_statements"})) continue;
        TargetConfig tc;
        if (!t["name"]) r.Error(t, "target: missing required key 'name'");
        else tc.name = r.Str(t["name"], "target.name");
        if (t["dsn"]) tc.dsn = r.Str(t["dsn"], "target '" + tc.name + "'.dsn");
        if (t["password_file"]) tc.password_file = r.Str(t["password_file"], "target '" + tc.name + "'.password_file");
        if (const YAML::Node ty = t["type"]) {
          tc.type = r.Str(ty, "target '" + tc.name + "'.type");
          if (ty.IsScalar() && tc.type != "postgres" && tc.type != "pgbouncer")
            r.Error(ty, "target '" + tc.name + "'.type must be 'postgres' or 'pgbouncer', got '" + tc.type + "'");
          if (tc.type == "pgbouncer" && t["databases"])
            r.Error(t["databases"], "target '" + tc.name +
                                        "': databases (discovery) applies to PostgreSQL targets, not to a pgbouncer console");
        }
        if (const YAML::Node d = t["databases"]) {
          std::string ctx = "target '" + tc.name + "'.databases";
          if (r.Map(d, ctx, {"discover", "include", "exclude", "refresh", "max_connections"})) {
            DatabaseDiscovery& dd = tc.databases;
            if (const YAML::Node v = d["discover"]) {
              if (v.IsScalar() && (v.Scalar() == "true" || v.Scalar() == "false")) dd.enabled = v.Scalar() == "true";
              else r.Error(v, ctx + ".discover must be true or false");
            }
            for (const char* key : {"include", "exclude"}) {
              if (!d[key]) continue;
              auto list = r.StrList(d[key], ctx + "." + key);
              for (size_t i = 0; i < list.size(); ++i) {
                try {
                  std::regex check(list[i]);
                } catch (const std::regex_error& e) {
                  r.Error(d[key][i], ctx + "." + key + ": invalid regex '" + list[i] + "': " + e.what());
                }
              }
              (std::string(key) == "include" ? dd.include : dd.exclude) = list;
            }
            if (d["refresh"]) r.Duration(d["refresh"], ctx + ".refresh", dd.refresh);
            if (d["max_connections"]) {
              dd.max_connections = r.Count(d["max_connections"], ctx + ".max_connections");
              if (dd.max_connections < 2) r.Error(d["max_connections"], ctx + ".max_connections must be at least 2");
            }
          }
        }
        if (const YAML::Node ps = t["prepared_statements"]) {
          if (ps.IsScalar() && (ps.Scalar() == "true" || ps.Scalar() == "false")) tc.prepared_statements = ps.Scalar() == "true";
          else r.Error(ps, "target '" + tc.name + "'.prepared_statements must be true or false");
        }
        if (const YAML::Node b = t["pgbackrest"]) ParseBackrest(b, r, "target '" + tc.name + "'.pgbackrest", tc.pgbackrest);
        if (const YAML::Node f = t["filesystem"]) {
          std::string ctx = "target '" + tc.name + "'.filesystem";
          if (r.Map(f, ctx, {"visible", "path_prefix"})) {
            if (const YAML::Node v = f["visible"]) {
              // YAML 1.1 reads yes/no as booleans; yaml-cpp keeps the text, so accept both spellings.
              std::string s = v.IsScalar() ? v.Scalar() : "";
              if (s == "auto") tc.filesystem.mode = FilesystemVisibility::Mode::Auto;
              else if (s == "yes" || s == "true") tc.filesystem.mode = FilesystemVisibility::Mode::Yes;
              else if (s == "no" || s == "false") tc.filesystem.mode = FilesystemVisibility::Mode::No;
              else r.Error(v, ctx + ".visible must be auto, yes or no");
            }
            if (const YAML::Node p = f["path_prefix"]) {
              tc.filesystem.path_prefix = r.Str(p, ctx + ".path_prefix");
              if (!tc.filesystem.path_prefix.empty() && tc.filesystem.path_prefix[0] != '/')
                r.Error(p, ctx + ".path_prefix must be an absolute path, got '" + tc.filesystem.path_prefix + "'");
              while (tc.filesystem.path_prefix.size() > 1 && tc.filesystem.path_prefix.back() == '/')
                tc.filesystem.path_prefix.pop_back();
              if (tc.filesystem.path_prefix == "/") tc.filesystem.path_prefix.clear();
            }
          }
        }
        if (const YAML::Node l = t["labels"]) {
          if (!l.IsMap()) {
            r.Error(l, "target '" + tc.name + "'.labels must map label names to values");
          } else {
            for (auto it = l.begin(); it != l.end(); ++it) {
              std::string key = r.Str(it->first, "label name");
              std::string value = r.Str(it->second, "label '" + key + "'");
              if (!collectors::ValidLabelName(key))
                r.Error(it->first, "target '" + tc.name + "': invalid label name '" + key + "'");
              else if (key == "target" || key == "datname")
                r.Error(it->first, "target '" + tc.name + "': label '" + key + "' is set by the agent");
              else if (tc.pgbackrest.enabled() && (key == "stanza" || key == "type"))
                r.Error(it->first, "target '" + tc.name + "': label '" + key + "' is set by the pgbackrest collector");
              tc.labels.emplace_back(key, value);
            }
          }
        }
        if (!tc.name.empty() &&
            tc.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                std::string::npos)
          r.Error(t["name"], "target name '" + tc.name + "' may only use letters, digits, '_', '-' and '.'");
        if (!tc.name.empty() && !names.insert(tc.name).second)
          r.Error(t["name"], "target name '" + tc.name + "' is used twice");
        cfg.targets.push_back(tc);
      }
    }
  }
  if (const YAML::Node c = root["collectors"]) {
    if (r.Map(c, "collectors", {"directories", "disable", "enable", "overrides"})) {
      if (c["directories"]) cfg.definition_dirs = r.StrList(c["directories"], "collectors.directories");
      if (c["disable"]) {
        for (auto& n : r.StrList(c["disable"], "collectors.disable")) cfg.disabled_collectors.insert(n);
      }
      if (c["enable"]) {
        for (auto& n : r.StrList(c["enable"], "collectors.enable")) cfg.enabled_collectors.insert(n);
      }
      if (const YAML::Node o = c["overrides"]) {
        if (!o.IsMap()) {
          r.Error(o, "collectors.overrides must map collector names to settings");
        } else {
          for (auto it = o.begin(); it != o.end(); ++it) {
            std::string name = r.Str(it->first, "collectors.overrides key");
            std::string ctx = "collectors.overrides." + name;
            CollectorOverride ov;
            ov.where = r.Where(it->first);
            const YAML::Node v = it->second;
            if (!r.Map(v, ctx, {"ttl", "timeout", "max_series", "max_rows"})) continue;
            Millis d{0};
            if (v["ttl"]) {
              r.Duration(v["ttl"], ctx + ".ttl", d);
              ov.ttl = d;
            }
            if (v["timeout"]) {
              r.Duration(v["timeout"], ctx + ".timeout", d);
              if (d.count() <= 0) r.Error(v["timeout"], ctx + ".timeout must be more than 0");
              ov.timeout = d;
            }
            if (v["max_series"]) ov.max_series = r.Count(v["max_series"], ctx + ".max_series");
            if (v["max_rows"]) ov.max_rows = r.Count(v["max_rows"], ctx + ".max_rows");
            cfg.overrides[name] = ov;
          }
        }
      }
    }
  }
  if (const YAML::Node s = root["scrape"]) {
    if (r.Map(s, "scrape", {"timeout", "timeout_offset", "collect_on_metrics_path"})) {
      if (const YAML::Node c = s["collect_on_metrics_path"]) {
        if (c.IsScalar() && (c.Scalar() == "true" || c.Scalar() == "false")) cfg.collect_on_metrics_path = c.Scalar() == "true";
        else r.Error(c, "scrape.collect_on_metrics_path must be true or false");
      }
      if (s["timeout"]) r.Duration(s["timeout"], "scrape.timeout", cfg.scrape_timeout);
      if (s["timeout_offset"]) r.Duration(s["timeout_offset"], "scrape.timeout_offset", cfg.timeout_offset);
      if (cfg.scrape_timeout.count() <= 0) r.Error(s["timeout"], "scrape.timeout must be more than 0");
    }
  }
  if (root["connect_timeout"]) r.Duration(root["connect_timeout"], "connect_timeout", cfg.connect_timeout);
}

}  // namespace

ConfigResult LoadConfigText(const std::string& text, const std::string& origin, const std::string& data_source_name,
                            const std::string& password_file) {
  ConfigResult result;
  Config& cfg = result.config;
  cfg.origin = origin;
  ConfigReader r(origin, result.errors);
  try {
    ParseConfig(YAML::Load(text), r, cfg);
  } catch (const YAML::Exception& e) {
    result.errors.push_back(origin + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                            ": YAML syntax error: " + e.msg);
  }
  if (cfg.targets.empty()) cfg.targets.push_back(TargetConfig{"default", data_source_name, password_file, {}, {}, "", {}, {}, true});
  return result;
}

ConfigResult LoadConfig(const std::string& path, const std::string& data_source_name,
                        const std::string& password_file) {
  if (path.empty()) {
    ConfigResult result;
    result.config.targets.push_back(TargetConfig{"default", data_source_name, password_file, {}, {}, "", {}, {}, true});
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
