#include "collectors/definition.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <dirent.h>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <cerrno>
#include <cstring>

#include "collectors/filesystem.h"
#include "collectors/yaml_reader.h"

namespace pgpulse::collectors {

namespace {

using Reader = YamlReader;

bool ValidCollectorName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// `unit` must stand as a whole component of the name: pg_x_seconds, pg_x_seconds_total.
bool NameCarriesUnit(const std::string& metric, const std::string& unit) {
  std::string needle = "_" + unit;
  for (size_t pos = metric.find(needle); pos != std::string::npos; pos = metric.find(needle, pos + 1)) {
    size_t end = pos + needle.size();
    if (end == metric.size() || metric[end] == '_') return true;
  }
  return false;
}

// A gauge or counter column: its metric name, help, unit and scale.
// foreign_names: another exporter's names, kept as it spells them (no _total or unit rules).
void ParseMetricColumn(Reader& r, const YAML::Node& spec, const std::string& ctx, bool foreign_names, Column& col) {
  bool counter = bool(spec["counter"]);
  const char* kind = counter ? "counter" : spec["untyped"] ? "untyped" : spec["histogram"] ? "histogram" : "gauge";
  col.usage = counter             ? ColumnUsage::Counter
              : spec["untyped"]   ? ColumnUsage::Untyped
              : spec["histogram"] ? ColumnUsage::Histogram
                                  : ColumnUsage::Gauge;
  if (auto s = r.String(spec[kind], ctx + ".metric")) col.metric = *s;
  if (spec["help"]) {
    if (auto s = r.String(spec["help"], ctx + ".help")) col.help = *s;
  }
  if (spec["unit"]) {
    if (auto s = r.String(spec["unit"], ctx + ".unit")) col.unit = *s;
  }
  if (spec["scale"]) {
    if (auto v = r.Number(spec["scale"], ctx + ".scale")) col.scale = *v;
  }
  if (col.help.empty()) r.Error(spec, ctx + ": metric '" + col.metric + "' needs a help text");
  if (!ValidMetricName(col.metric)) {
    r.Error(spec, ctx + ": invalid metric name '" + col.metric + "' (must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
  } else if (foreign_names) {
    // no naming rules
  } else if (counter && (col.metric.size() < 6 || col.metric.compare(col.metric.size() - 6, 6, "_total") != 0)) {
    r.Error(spec, ctx + ": counter '" + col.metric + "' must end in _total");
  } else if (!counter && col.metric.size() >= 6 && col.metric.compare(col.metric.size() - 6, 6, "_total") == 0) {
    r.Error(spec, ctx + ": gauge '" + col.metric + "' must not end in _total (that suffix is for counters)");
  }
  if (!foreign_names && !col.unit.empty() && !NameCarriesUnit(col.metric, col.unit))
    r.Error(spec, ctx + ": metric '" + col.metric + "' must carry its unit '_" + col.unit + "' in its name");
}

void ParseColumn(Reader& r, const std::string& col_name, const YAML::Node& spec, Definition& def) {
  Column col;
  col.name = col_name;
  std::string ctx = "column '" + col_name + "'";
  if (spec.IsScalar()) {
    const std::string& s = spec.Scalar();
    if (s == "label") {
      col.usage = ColumnUsage::Label;
      col.label = col_name;
    } else if (s == "ignore") {
      col.usage = ColumnUsage::Ignore;
    } else if (s == "rows_before_limit") {
      col.usage = ColumnUsage::RowsBeforeLimit;
    } else {
      r.Error(spec, ctx +
                        ": expected 'label', 'ignore', 'rows_before_limit' or a map with one of label, gauge, counter, "
                        "ignore, add_to; got '" +
                        s + "'");
      return;
    }
  } else if (spec.IsMap()) {
    if (def.foreign_names)
      r.CheckKeys(spec, ctx,
                  {"label", "gauge", "counter", "untyped", "histogram", "name_suffix", "ignore", "add_to", "help",
                   "unit", "scale"});
    else r.CheckKeys(spec, ctx, {"label", "gauge", "counter", "ignore", "add_to", "help", "unit", "scale"});
    int kinds = 0;
    for (const char* k : {"label", "gauge", "counter", "untyped", "histogram", "name_suffix", "ignore", "add_to"})
      kinds += spec[k] ? 1 : 0;
    if (kinds != 1) {
      r.Error(spec, ctx + ": needs exactly one of label, gauge, counter, ignore, add_to");
      return;
    }
    if (spec["name_suffix"]) {
      col.usage = ColumnUsage::NameSuffix;
      if (auto s = r.String(spec["name_suffix"], ctx + ".name_suffix")) col.metric = *s;
      if (!ValidMetricName(col.metric)) r.Error(spec, ctx + ": invalid metric name prefix '" + col.metric + "'");
    } else if (spec["add_to"]) {
      col.usage = ColumnUsage::AddTo;
      if (auto s = r.String(spec["add_to"], ctx + ".add_to")) col.add_to = *s;
      if (spec["help"] || spec["unit"])
        r.Error(spec, ctx + ": help and unit belong to the column it adds to; add_to takes only scale");
      if (spec["scale"]) {
        if (auto v = r.Number(spec["scale"], ctx + ".scale")) col.scale = *v;
      }
    } else if (spec["label"]) {
      col.usage = ColumnUsage::Label;
      if (auto s = r.String(spec["label"], ctx + ".label")) col.label = *s;
      if (spec["help"] || spec["unit"] || spec["scale"])
        r.Error(spec, ctx + ": help, unit and scale apply to gauge and counter columns only");
    } else if (spec["ignore"]) {
      col.usage = ColumnUsage::Ignore;
    } else {
      ParseMetricColumn(r, spec, ctx, def.foreign_names, col);
    }
  } else {
    r.Error(spec, ctx + ": expected 'label', 'ignore', 'rows_before_limit' or a map");
    return;
  }
  if (col.usage == ColumnUsage::Label) {
    if (!ValidLabelName(col.label)) {
      r.Error(spec, ctx + ": invalid label name '" + col.label +
                        "' (must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __)");
    } else if (def.scope == Scope::Database && col.label == "datname") {
      r.Error(spec, ctx + ": label 'datname' is added by the agent to database-scoped collectors; choose another name");
    }
  }
  def.columns.push_back(std::move(col));
}

// ttl, timeout, row and series limits, and the switches.
void ParseLimits(Reader& r, const YAML::Node& node, const std::string& ctx, Definition& def) {
  if (node["ttl"]) {
    if (auto d = r.Duration(node["ttl"], ctx + ".ttl")) def.ttl = *d;
  }
  if (node["timeout"]) {
    if (auto d = r.Duration(node["timeout"], ctx + ".timeout")) {
      if (d->count() <= 0) r.Error(node["timeout"], ctx + ".timeout: must be more than 0");
      def.timeout = *d;
    }
  }
  if (node["max_series"]) {
    if (auto v = r.Integer(node["max_series"], ctx + ".max_series")) {
      if (*v <= 0) r.Error(node["max_series"], ctx + ".max_series: must be at least 1");
      else def.max_series = static_cast<size_t>(*v);
    }
  }
  if (node["max_rows"]) {
    if (auto v = r.Integer(node["max_rows"], ctx + ".max_rows")) {
      if (*v <= 0) r.Error(node["max_rows"], ctx + ".max_rows: must be at least 1");
      else def.max_rows = static_cast<size_t>(*v);
    }
  }
  if (node["enabled"]) {
    if (auto b = r.Bool(node["enabled"], ctx + ".enabled")) def.enabled = *b;
  }
  if (const YAML::Node io = node["ignore_other_columns"]) {
    if (auto b = r.Bool(io, ctx + ".ignore_other_columns")) def.ignore_other_columns = *b;
  }
}

// pivot (rows of name/value pairs become columns) and info (a constant-1 metric of labels).
void ParsePivotAndInfo(Reader& r, const YAML::Node& node, const std::string& ctx, Definition& def) {
  if (const YAML::Node pv = node["pivot"]) {
    if (!pv.IsMap()) {
      r.Error(pv, ctx + ".pivot: must be a map with key and value (the result columns holding names and values)");
    } else {
      r.CheckKeys(pv, ctx + ".pivot", {"key", "value"});
      Pivot p;
      if (!pv["key"]) r.Error(pv, ctx + ".pivot: missing required key 'key'");
      else if (auto s = r.String(pv["key"], ctx + ".pivot.key")) p.key_column = *s;
      if (!pv["value"]) r.Error(pv, ctx + ".pivot: missing required key 'value'");
      else if (auto s = r.String(pv["value"], ctx + ".pivot.value")) p.value_column = *s;
      if (!p.key_column.empty() && p.key_column == p.value_column)
        r.Error(pv, ctx + ".pivot: key and value must be different columns");
      def.pivot = p;
    }
  }
  if (const YAML::Node in = node["info"]) {
    if (!in.IsMap()) {
      r.Error(in, ctx + ".info: must be a map with gauge and help");
    } else {
      r.CheckKeys(in, ctx + ".info", {"gauge", "help"});
      InfoMetric info;
      if (!in["gauge"]) r.Error(in, ctx + ".info: missing required key 'gauge'");
      else if (auto s = r.String(in["gauge"], ctx + ".info.gauge")) info.metric = *s;
      if (!in["help"]) r.Error(in, ctx + ".info: missing required key 'help'");
      else if (auto s = r.String(in["help"], ctx + ".info.help")) info.help = *s;
      if (!info.metric.empty() && !ValidMetricName(info.metric))
        r.Error(in, ctx + ".info: invalid metric name '" + info.metric + "' (must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
      else if (info.metric.size() < 5 || info.metric.compare(info.metric.size() - 5, 5, "_info") != 0)
        r.Error(in, ctx + ".info: info metric '" + info.metric + "' must end in _info");
      def.info = info;
    }
  }
}

// What a server or database must have for the collector to run.
void ParseRequires(Reader& r, const YAML::Node& node, const std::string& ctx, Definition& def) {
  if (const YAML::Node req = node["requires"]) {
    if (!req.IsMap()) {
      r.Error(req, ctx + ".requires: must be a map with extension and/or role");
    } else {
      r.CheckKeys(req, ctx + ".requires", {"extension", "role", "privilege"});
      if (req["privilege"] && !req["privilege"].IsNull()) {
        if (auto s = r.String(req["privilege"], ctx + ".requires.privilege")) {
          // Only predefined roles: a site's own role names would make the shipped definitions non-portable.
          if (s->rfind("pg_", 0) != 0 || !ValidCollectorName(*s))
            r.Error(req["privilege"], ctx +
                                          ".requires.privilege: must name a predefined role such as pg_monitor or "
                                          "pg_read_all_settings, got '" +
                                          *s + "'");
          else def.required_privilege = *s;
        }
      }
      if (req["extension"] && !req["extension"].IsNull()) {
        if (auto s = r.String(req["extension"], ctx + ".requires.extension")) def.required_extension = *s;
      }
      if (req["role"]) {
        if (auto s = r.String(req["role"], ctx + ".requires.role")) {
          if (*s == "any") def.required_role = Role::Any;
          else if (*s == "primary") def.required_role = Role::Primary;
          else if (*s == "replica") def.required_role = Role::Replica;
          else r.Error(req["role"], ctx + ".requires.role: must be primary, replica or any, got '" + *s + "'");
        }
      }
    }
  }
}

// Which server version's SQL variant an installed extension version calls for.
void ParseExtensionVersions(Reader& r, const YAML::Node& node, const std::string& ctx, Definition& def) {
  const YAML::Node ev = node["extension_versions"];
  if (!ev) return;
  const std::string what = ctx + ".extension_versions";
  if (!def.required_extension) {
    r.Error(ev, what + ": needs requires.extension (whose installed version it maps)");
  } else if (def.scope != Scope::Server) {
    r.Error(ev, what + ": only for scope server (the extension's version is read in the target's database)");
  } else if (!ev.IsMap() || ev.size() == 0) {
    r.Error(ev, what + ": must be a non-empty map of extension version (\"1.8\") to server_version_num");
  } else {
    for (auto it = ev.begin(); it != ev.end(); ++it) {
      const std::string version = it->first.IsScalar() ? it->first.Scalar() : "";
      const int parsed = ExtensionVersionNum(version);
      if (parsed < 0) {
        r.Error(it->first, what + ": '" + version + "' is not an extension version like 1.8");
        continue;
      }
      if (auto v = r.Integer(it->second, what + " " + version)) {
        def.extension_versions.emplace_back(parsed, static_cast<int>(*v));
      }
    }
    std::sort(def.extension_versions.begin(), def.extension_versions.end());
  }
}

// sql, or variants by server version that must not overlap.
void ParseVariants(Reader& r, const YAML::Node& node, const std::string& ctx, Definition& def) {
  if (node["sql"] && node["variants"]) {
    r.Error(node, ctx + ": give either 'sql' or 'variants', not both");
  } else if (node["sql"]) {
    if (auto s = r.String(node["sql"], ctx + ".sql")) def.variants.push_back(Variant{0, 1'000'000, *s});
  } else if (const YAML::Node vs = node["variants"]) {
    if (!vs.IsSequence() || vs.size() == 0) {
      r.Error(vs, ctx + ".variants: must be a non-empty list");
    } else {
      for (const YAML::Node& v : vs) {
        if (!v.IsMap()) {
          r.Error(v, ctx + ".variants: each variant must be a map");
          continue;
        }
        r.CheckKeys(v, ctx + " variant", {"min_version", "max_version", "sql"});
        Variant var;
        if (v["min_version"]) {
          if (auto i = r.Integer(v["min_version"], ctx + " variant min_version"))
            var.min_version = static_cast<int>(*i);
        }
        if (v["max_version"]) {
          if (auto i = r.Integer(v["max_version"], ctx + " variant max_version"))
            var.max_version = static_cast<int>(*i);
        }
        if (!v["sql"]) r.Error(v, ctx + " variant: missing required key 'sql'");
        else if (auto s = r.String(v["sql"], ctx + " variant sql")) var.sql = *s;
        if (var.min_version >= var.max_version)
          r.Error(v, ctx + " variant: min_version " + std::to_string(var.min_version) + " must be below max_version " +
                         std::to_string(var.max_version) + " (max_version is exclusive)");
        def.variants.push_back(std::move(var));
      }
      std::vector<std::pair<Variant, YAML::Node>> sorted;
      for (size_t i = 0; i < def.variants.size(); ++i) sorted.emplace_back(def.variants[i], vs[i]);
      std::sort(sorted.begin(), sorted.end(),
                [](const auto& a, const auto& b) { return a.first.min_version < b.first.min_version; });
      for (size_t i = 1; i < sorted.size(); ++i) {
        if (sorted[i].first.min_version < sorted[i - 1].first.max_version)
          r.Error(sorted[i].second, ctx + ": variant for versions [" + std::to_string(sorted[i].first.min_version) +
                                        ", " + std::to_string(sorted[i].first.max_version) +
                                        ") overlaps the variant for [" +
                                        std::to_string(sorted[i - 1].first.min_version) + ", " +
                                        std::to_string(sorted[i - 1].first.max_version) + ")");
      }
    }
  } else {
    r.Error(node, ctx + ": missing required key 'sql' (or 'variants')");
  }
  for (const Variant& v : def.variants) {
    if (v.sql.find_first_not_of(" \t\r\n") == std::string::npos) r.Error(node, ctx + ": a variant has empty sql");
  }
}

// What a PgBouncer admin console can run.
void CheckPgBouncerCollector(Reader& r, const YAML::Node& node, const std::string& ctx, const Definition& def) {
  // The admin console runs only its own commands, over the simple protocol,
  // where several statements would run; one SHOW keeps that out.
  static const std::regex show("^\\s*SHOW\\s+[A-Za-z_]+\\s*;?\\s*$", std::regex::icase);
  for (size_t i = 0; i < def.variants.size(); ++i) {
    const Variant& v = def.variants[i];
    // (A yaml-cpp Node is a reference: assigning one rewrites the document, so pick without assigning.)
    auto sql_node = [&]() -> YAML::Node {
      const YAML::Node vs = node["variants"];
      if (vs && vs.IsSequence() && i < vs.size() && vs[i].IsMap() && vs[i]["sql"]) return vs[i]["sql"];
      return node["sql"] ? node["sql"] : node;
    };
    if (!std::regex_match(v.sql, show)) {
      std::string shown = v.sql.substr(0, 60);
      std::replace(shown.begin(), shown.end(), '\n', ' ');
      r.Error(sql_node(), ctx + ": a pgbouncer collector's sql must be one 'SHOW <command>' (e.g. SHOW POOLS), got '" +
                              shown + "'");
    }
  }
  if (def.scope == Scope::Database)
    r.Error(node["scope"],
            ctx + ".scope: a pgbouncer collector runs once per console; scope 'database' does not apply");
  if (const YAML::Node req = node["requires"])
    r.Error(req, ctx + ".requires: extensions and roles are PostgreSQL's; a pgbouncer collector cannot require them");
  if (const YAML::Node fs = node["filesystem"])
    r.Error(fs, ctx + ".filesystem: a pgbouncer collector reports no server paths to look at");
}

// Across columns: one metric or label per name, something to report, limits and filesystem columns that fit.
void CheckColumns(Reader& r, const YAML::Node& node, const std::string& ctx, const Definition& def) {
  const YAML::Node cols = node["columns"];
  bool has_metric = def.info.has_value();
  std::map<std::string, std::string> labels;
  std::set<std::string> metrics;
  if (def.info) metrics.insert(def.info->metric);
  for (const Column& c : def.columns) {
    if (c.usage == ColumnUsage::AddTo) {
      const Column* into = def.FindColumn(c.add_to);
      if (!into || !IsMetricUsage(into->usage))
        r.Error(cols[c.name], ctx + ": column '" + c.name + "' adds to '" + c.add_to +
                                  "', which is not a gauge or counter column of this collector");
    }
    if (def.pivot && (c.name == def.pivot->key_column || c.name == def.pivot->value_column))
      r.Error(cols[c.name],
              ctx + ": column '" + c.name + "' is a pivot column; after the pivot the columns are the keys");
    if (IsMetricUsage(c.usage)) {
      has_metric = true;
      if (!metrics.insert(c.metric).second)
        r.Error(cols, ctx + ": metric '" + c.metric + "' is produced by two columns");
    }
    if (c.usage == ColumnUsage::Label && !labels.emplace(c.label, c.name).second)
      r.Error(cols,
              ctx + ": label '" + c.label + "' is produced by columns '" + labels[c.label] + "' and '" + c.name + "'");
  }
  if (!has_metric) r.Error(cols, ctx + ": no gauge or counter column (or info), so it produces nothing");
  if (const Column* suffix = def.NameSuffixColumn()) {
    size_t named = 0, suffixes = 0;
    for (const Column& c : def.columns) {
      named += IsMetricUsage(c.usage) ? 1 : 0;
      suffixes += c.usage == ColumnUsage::NameSuffix ? 1 : 0;
    }
    if (named != 1 || suffixes != 1 || def.info)
      r.Error(cols[suffix->name], ctx + ": a name_suffix column names the metric of exactly one gauge column");
  }
  size_t counts = 0;
  for (const Column& c : def.columns) counts += c.usage == ColumnUsage::RowsBeforeLimit ? 1 : 0;
  if (counts > 1) r.Error(cols, ctx + ": only one column can be rows_before_limit");
  if (counts == 1 && def.max_rows == SIZE_MAX)
    r.Error(cols, ctx + ": a rows_before_limit column means the SQL limits itself with LIMIT $1, which needs max_rows");
  if (counts == 1 && def.target == TargetKind::PgBouncer)
    r.Error(cols,
            ctx + ": a pgbouncer collector cannot use rows_before_limit: the console has no parameters to bind $1");
  if (!def.filesystem_column.empty() && !def.FindColumn(def.filesystem_column))
    r.Error(node["filesystem"], ctx + ".filesystem: column '" + def.filesystem_column +
                                    "' (the path to look at) must be described in 'columns'");
  for (const char* added : kFilesystemColumns) {
    if (def.filesystem_column.empty() && def.FindColumn(added))
      r.Error(cols, ctx + ": column '" + std::string(added) +
                        "' is added by the engine only with 'filesystem: <path column>'");
    if (def.filesystem_column == added)
      r.Error(node["filesystem"], ctx + ".filesystem: '" + std::string(added) + "' is an added column, not a path");
  }
}

// Each column's usage, then what the columns must say together.
void ParseColumns(Reader& r, const YAML::Node& node, const std::string& ctx, Definition& def) {
  const YAML::Node cols = node["columns"];
  if (!cols) {
    r.Error(node, ctx + ": missing required key 'columns'");
    return;
  }
  if (!cols.IsMap() || cols.size() == 0) {
    r.Error(cols, ctx + ".columns: must be a non-empty map of result column to usage");
    return;
  }
  std::set<std::string> seen;
  for (auto it = cols.begin(); it != cols.end(); ++it) {
    if (!it->first.IsScalar()) {
      r.Error(it->first, ctx + ".columns: column names must be strings");
      continue;
    }
    if (!seen.insert(it->first.Scalar()).second) {
      r.Error(it->first, ctx + ".columns: column '" + it->first.Scalar() + "' is given twice");
      continue;
    }
    ParseColumn(r, it->first.Scalar(), it->second, def);
  }
  CheckColumns(r, node, ctx, def);
}

std::optional<Definition> ParseDefinition(Reader& r, const YAML::Node& node, bool foreign_names) {
  if (!node.IsMap()) {
    r.Error(node, "a collector must be a map");
    return std::nullopt;
  }
  Definition def;
  def.foreign_names = foreign_names;
  def.origin = r.Where(node);
  std::string ctx = "collector";
  if (!node["name"]) {
    r.Error(node, "collector: missing required key 'name'");
  } else if (auto s = r.String(node["name"], "name")) {
    def.name = *s;
    ctx = "collector '" + def.name + "'";
    if (!ValidCollectorName(def.name)) r.Error(node["name"], ctx + ": name must match [a-z_][a-z0-9_]*");
  }
  r.CheckKeys(node, ctx, {"name",       "help",
                          "scope",      "target",
                          "ttl",        "timeout",
                          "requires",   "variants",
                          "sql",        "columns",
                          "max_series", "max_rows",
                          "enabled",    "pivot",
                          "info",       "ignore_other_columns",
                          "filesystem", "extension_versions",
                          "run_in",     "run_if"});
  if (node["target"]) {
    if (auto s = r.String(node["target"], ctx + ".target")) {
      if (*s == "postgres") def.target = TargetKind::Postgres;
      else if (*s == "pgbouncer") def.target = TargetKind::PgBouncer;
      else r.Error(node["target"], ctx + ".target: must be 'postgres' or 'pgbouncer', got '" + *s + "'");
    }
  }
  if (!node["help"]) {
    r.Error(node, ctx + ": missing required key 'help'");
  } else if (auto s = r.String(node["help"], ctx + ".help")) {
    def.help = *s;
  }
  if (node["scope"]) {
    if (auto s = r.String(node["scope"], ctx + ".scope")) {
      if (*s == "server") def.scope = Scope::Server;
      else if (*s == "database") def.scope = Scope::Database;
      else r.Error(node["scope"], ctx + ".scope: must be 'server' or 'database', got '" + *s + "'");
    }
  }
  ParseLimits(r, node, ctx, def);
  ParsePivotAndInfo(r, node, ctx, def);
  if (node["filesystem"]) {
    if (auto s = r.String(node["filesystem"], ctx + ".filesystem")) def.filesystem_column = *s;
  }
  if (node["run_in"]) {
    if (auto s = r.String(node["run_in"], ctx + ".run_in")) {
      def.run_in_sql = *s;
      if (def.run_in_sql.find_first_not_of(" \t\r\n") == std::string::npos)
        r.Error(node["run_in"], ctx + ".run_in: empty query (leave the key out to run in every database)");
      else if (def.scope != Scope::Database || def.target != TargetKind::Postgres)
        r.Error(node["run_in"], ctx +
                                    ".run_in: only a PostgreSQL collector with scope: database runs in chosen "
                                    "databases");
    }
  }
  if (node["run_if"]) {
    if (auto s = r.String(node["run_if"], ctx + ".run_if")) {
      def.run_if_sql = *s;
      if (def.run_if_sql.find_first_not_of(" \t\r\n") == std::string::npos)
        r.Error(node["run_if"], ctx + ".run_if: empty query (leave the key out to always run)");
      else if (def.target != TargetKind::Postgres)
        r.Error(node["run_if"], ctx + ".run_if: a PgBouncer console runs no queries but its SHOW commands");
      else if (node["pivot"])
        r.Error(node["run_if"], ctx + ".run_if: not with pivot (a pivot's keys must all be there)");
    }
  }
  ParseRequires(r, node, ctx, def);
  ParseExtensionVersions(r, node, ctx, def);
  ParseVariants(r, node, ctx, def);
  if (def.target == TargetKind::PgBouncer) CheckPgBouncerCollector(r, node, ctx, def);
  ParseColumns(r, node, ctx, def);
  return def;
}

}  // namespace

bool ValidMetricName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

const char* TargetKindName(TargetKind kind) { return kind == TargetKind::PgBouncer ? "pgbouncer" : "postgres"; }

int ExtensionVersionNum(const std::string& version) {
  static const std::regex kVersion(R"(([0-9]{1,4})\.([0-9]{1,2}))");
  std::smatch m;
  if (!std::regex_match(version, m, kVersion)) return -1;
  return std::stoi(m[1]) * 100 + std::stoi(m[2]);
}

std::optional<int> Definition::ServerVersionForExtension(int extension_version) const {
  std::optional<int> server;
  for (const auto& [extension, server_version] : extension_versions) {
    if (extension <= extension_version) server = server_version;
  }
  return server;
}

const Variant* Definition::VariantFor(int server_version_num) const {
  for (const Variant& v : variants) {
    if (server_version_num >= v.min_version && server_version_num < v.max_version) return &v;
  }
  return nullptr;
}

bool Definition::LimitsItself() const {
  for (const Column& c : columns)
    if (c.usage == ColumnUsage::RowsBeforeLimit) return true;
  return false;
}

bool IsMetricUsage(ColumnUsage usage) {
  return usage == ColumnUsage::Gauge || usage == ColumnUsage::Counter || usage == ColumnUsage::Untyped ||
         usage == ColumnUsage::Histogram;
}

const Column* Definition::NameSuffixColumn() const {
  for (const Column& c : columns)
    if (c.usage == ColumnUsage::NameSuffix) return &c;
  return nullptr;
}

const Column* Definition::FindColumn(const std::string& column) const {
  for (const Column& c : columns) {
    if (c.name == column) return &c;
  }
  return nullptr;
}

LoadResult LoadDefinitions(const std::vector<Source>& sources) {
  LoadResult result;
  std::vector<Definition> merged;  // in first-defined order; overrides replace in place
  for (const Source& src : sources) {
    Reader r(src.origin, result.errors);
    std::optional<YAML::Node> loaded = r.Load(src.text);
    if (!loaded) continue;
    const YAML::Node root = *loaded;
    if (root.IsNull()) continue;  // an empty file defines nothing
    if (!root.IsMap()) {
      r.Error(root, "expected a map with a 'collectors' list at the top");
      continue;
    }
    r.CheckKeys(root, "file", {"collectors"});
    const YAML::Node list = root["collectors"];
    if (!list) {
      r.Error(root, "missing top-level key 'collectors'");
      continue;
    }
    if (!list.IsSequence()) {
      r.Error(list, "'collectors' must be a list");
      continue;
    }
    std::map<std::string, std::string> in_this_source;
    for (const YAML::Node& item : list) {
      auto def = ParseDefinition(r, item, src.foreign_names);
      if (!def || def->name.empty()) continue;
      auto [it, fresh] = in_this_source.emplace(def->name, def->origin);
      if (!fresh) {
        r.Error(item, "collector '" + def->name + "' is defined twice in this file (first at " + it->second + ")");
        continue;
      }
      auto existing =
          std::find_if(merged.begin(), merged.end(), [&](const Definition& d) { return d.name == def->name; });
      if (existing != merged.end()) *existing = std::move(*def);
      else merged.push_back(std::move(*def));
    }
  }
  std::map<std::string, const Definition*> owner;
  for (const Definition& d : merged) {
    if (d.info) {
      auto [it, fresh] = owner.emplace(d.info->metric, &d);
      if (!fresh && it->second != &d)
        result.errors.push_back(d.origin + ": collector '" + d.name + "': metric '" + d.info->metric +
                                "' is already produced by collector '" + it->second->name + "' (" + it->second->origin +
                                ")");
    }
    for (const Column& c : d.columns) {
      if (!IsMetricUsage(c.usage) || d.NameSuffixColumn()) continue;
      auto [it, fresh] = owner.emplace(c.metric, &d);
      if (!fresh && it->second != &d)
        result.errors.push_back(d.origin + ": collector '" + d.name + "': metric '" + c.metric +
                                "' is already produced by collector '" + it->second->name + "' (" + it->second->origin +
                                ")");
    }
  }
  if (result.errors.empty()) result.definitions = std::move(merged);
  return result;
}

std::vector<Source> ReadDefinitionDirectory(const std::string& dir, std::vector<std::string>& errors) {
  std::vector<Source> out;
  DIR* d = opendir(dir.c_str());
  if (!d) {
    errors.push_back(dir + ": cannot open definitions directory: " + std::strerror(errno));
    return out;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    auto ends = [&](const std::string& suf) {
      return n.size() > suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (ends(".yaml") || ends(".yml")) names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    std::string path = dir + "/" + n;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      errors.push_back(path + ": cannot read: " + std::strerror(errno));
      continue;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    out.push_back(Source{path, ss.str()});
  }
  return out;
}

}  // namespace pgpulse::collectors
