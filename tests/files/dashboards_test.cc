// The Grafana dashboards import anywhere: every panel and variable uses the datasource variable, the job, instance
// and datname variables come from pgpulse's own metrics and filter every query, rates use $__rate_interval, panels
// are current types with units, and every metric a query names is one pgpulse exports (so renaming a metric breaks
// this test, not a user's dashboard). No servers: the JSON files and queries/METRICS.md are read from the source tree.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/prometheus_server.h"

namespace pgpulse::testing {
namespace {

using detail::Json;

const std::string kSourceDir = PGPULSE_SOURCE_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// What pgpulse exports: the generated reference's metrics with their labels, plus the agent's own and the series
// Prometheus adds to every scrape.
struct Reference {
  std::map<std::string, std::set<std::string>> labels;  // from queries/METRICS.md
  std::set<std::string> other;                          // no label list checked

  bool Known(const std::string& metric) const { return labels.count(metric) > 0 || other.count(metric) > 0; }
  bool HasDatname(const std::string& metric) const {
    auto it = labels.find(metric);
    return it != labels.end() && it->second.count("datname") > 0;
  }
};

Reference LoadReference() {
  Reference ref;
  // Rows look like: | `pg_locks` | gauge | datname, locktype, mode, granted | - | help |
  std::istringstream metrics(ReadFile(kSourceDir + "/queries/METRICS.md"));
  const std::regex row(R"(^\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \| [a-z]+ \| ([^|]*) \|)");
  std::string line;
  while (std::getline(metrics, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    std::set<std::string>& labels = ref.labels[m[1]];
    std::istringstream list(m[2].str());
    std::string label;
    while (std::getline(list, label, ',')) {
      label.erase(0, label.find_first_not_of(' '));
      label.erase(label.find_last_not_of(' ') + 1);
      if (!label.empty() && label != "-") labels.insert(label);
    }
  }
  // The agent's own metrics, as named in its source; a histogram also has _bucket, _sum and _count.
  const std::string self = ReadFile(kSourceDir + "/agent/self_metrics.cc");
  const std::regex name(R"re("((pgpulse|process)_[a-z_]+)")re");
  for (auto it = std::sregex_iterator(self.begin(), self.end(), name); it != std::sregex_iterator(); ++it) {
    ref.other.insert((*it)[1]);
  }
  const std::regex histogram(R"re(BuildHistogram\(\)\s*\.Name\("([a-z_]+)"\))re");
  for (auto it = std::sregex_iterator(self.begin(), self.end(), histogram); it != std::sregex_iterator(); ++it) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) ref.other.insert((*it)[1].str() + suffix);
  }
  // Made by the agent on every scrape, and by Prometheus for every scrape.
  for (const char* m :
       {"pg_up", "pg_info", "pgbouncer_up", "pgbouncer_info", "up", "scrape_duration_seconds", "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS"}) {
    ref.other.insert(m);
  }
  return ref;
}

// ---- Just enough PromQL: the selectors an expression names, and the ranges its rate-like calls use. ----

struct Matcher {
  std::string label;
  std::string op;
  std::string value;  // as written between the quotes
};

struct Selector {
  std::string metric;
  std::vector<Matcher> matchers;
};

struct Scan {
  std::vector<Selector> selectors;
  std::vector<std::string> problems;  // rate-like calls without [$__rate_interval], selectors without a name, ...
};

bool IdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool IdentChar(char c) { return IdentStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

// Index just past the string literal starting at i (a quote character).
size_t SkipString(const std::string& s, size_t i) {
  const char quote = s[i++];
  while (i < s.size() && s[i] != quote) i += (s[i] == '\\' && quote != '`') ? 2 : 1;
  return std::min(i + 1, s.size());
}

// Index just past the bracket group starting at i (s[i] is open), strings skipped.
size_t SkipGroup(const std::string& s, size_t i, char open, char close) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == '"' || s[i] == '\'' || s[i] == '`') {
      i = SkipString(s, i) - 1;
    } else if (s[i] == open) {
      ++depth;
    } else if (s[i] == close && --depth == 0) {
      return i + 1;
    }
  }
  return s.size();
}

size_t SkipSpace(const std::string& s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// body is what is between { and }.
std::vector<Matcher> ParseMatchers(const std::string& body, std::vector<std::string>& problems) {
  std::vector<Matcher> out;
  size_t i = 0;
  while ((i = SkipSpace(body, i)) < body.size()) {
    Matcher m;
    while (i < body.size() && IdentChar(body[i])) m.label += body[i++];
    i = SkipSpace(body, i);
    while (i < body.size() && (body[i] == '=' || body[i] == '!' || body[i] == '~')) m.op += body[i++];
    i = SkipSpace(body, i);
    if (m.label.empty() || m.op.empty() || i >= body.size() || body[i] != '"') {
      problems.push_back("cannot read the matchers {" + body + "}");
      return out;
    }
    const size_t end = SkipString(body, i);
    m.value = body.substr(i + 1, end - i - 2);
    out.push_back(m);
    i = SkipSpace(body, end);
    if (i < body.size() && body[i] == ',') ++i;
  }
  return out;
}

Scan ScanPromQL(const std::string& expr) {
  static const std::set<std::string> kAggregations = {
      "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"};
  static const std::set<std::string> kLabelLists = {"by", "without", "on", "ignoring", "group_left", "group_right"};
  static const std::set<std::string> kKeywords = {"and", "or", "unless", "bool", "offset", "atan2", "NaN", "Inf"};
  static const std::set<std::string> kRateLike = {"rate", "irate", "increase"};
  Scan scan;
  struct Call {
    std::string function;  // "" for a plain parenthesis
    std::string range;     // the [...] written directly inside it, if any
  };
  std::vector<Call> calls;
  std::string pending_function;
  for (size_t i = 0; i < expr.size();) {
    const char c = expr[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '"' || c == '\'' || c == '`') {
      i = SkipString(expr, i);
    } else if (c == '#') {
      while (i < expr.size() && expr[i] != '\n') ++i;
    } else if (c == '$') {
      ++i;
      if (i < expr.size() && expr[i] == '{') {
        i = SkipGroup(expr, i, '{', '}');
      } else {
        while (i < expr.size() && IdentChar(expr[i])) ++i;
      }
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[i])) || expr[i] == '.')) ++i;
    } else if (IdentStart(c)) {
      std::string ident;
      while (i < expr.size() && IdentChar(expr[i])) ident += expr[i++];
      const size_t next = SkipSpace(expr, i);
      const char after = next < expr.size() ? expr[next] : '\0';
      if (kLabelLists.count(ident)) {
        if (after == '(') i = SkipGroup(expr, next, '(', ')');
      } else if (kKeywords.count(ident) || kAggregations.count(ident)) {
        pending_function = ident;
      } else if (after == '(') {
        pending_function = ident;
      } else {
        Selector sel;
        sel.metric = ident;
        if (after == '{') {
          const size_t end = SkipGroup(expr, next, '{', '}');
          sel.matchers = ParseMatchers(expr.substr(next + 1, end - next - 2), scan.problems);
          i = end;
        }
        scan.selectors.push_back(sel);
      }
    } else if (c == '{') {
      const size_t end = SkipGroup(expr, i, '{', '}');
      scan.problems.push_back("a selector without a metric name: " + expr.substr(i, end - i));
      i = end;
    } else if (c == '[') {
      const size_t end = SkipGroup(expr, i, '[', ']');
      if (!calls.empty()) calls.back().range = expr.substr(i + 1, end - i - 2);
      i = end;
    } else if (c == '(') {
      calls.push_back({pending_function, ""});
      pending_function.clear();
      ++i;
    } else if (c == ')') {
      if (!calls.empty()) {
        const Call call = calls.back();
        calls.pop_back();
        if (kRateLike.count(call.function) && call.range != "$__rate_interval") {
          scan.problems.push_back(call.function + "() over [" + call.range + "], not [$__rate_interval]");
        }
      }
      ++i;
    } else {
      pending_function.clear();
      ++i;
    }
  }
  return scan;
}

// ---- Dashboards ----

struct Dashboard {
  std::string file;  // "pgpulse-overview.json"
  Json json;
};

std::vector<Dashboard> LoadDashboards(std::vector<std::string>* parse_errors = nullptr,
                                      const std::string& dir = kSourceDir + "/dashboards") {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<Dashboard> out;
  for (const auto& path : paths) {
    const std::string file = std::filesystem::path(path).filename().string();
    try {
      out.push_back({file, Json::Parse(ReadFile(path))});
    } catch (const std::exception& e) {
      if (parse_errors) parse_errors->push_back(file + ": " + e.what());
    }
  }
  return out;
}

bool IsDatasourceVariable(const Json& ds) {
  return ds.type() == Json::Type::kObject && ds["type"].str() == "prometheus" && ds["uid"].str() == "${datasource}";
}

std::string Describe(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull: return "nothing";
    case Json::Type::kString: return "\"" + v.str() + "\"";
    case Json::Type::kObject: return "{type: \"" + v["type"].str() + "\", uid: \"" + v["uid"].str() + "\"}";
    default: return "a non-object";
  }
}

// Every panel, the ones inside collapsed rows too.
std::vector<const Json*> Panels(const Json& dashboard) {
  std::vector<const Json*> out;
  for (const Json& p : dashboard["panels"].items()) {
    out.push_back(&p);
    for (const Json& inner : p["panels"].items()) out.push_back(&inner);
  }
  return out;
}

std::string PanelName(const Dashboard& d, const Json& panel) {
  std::ostringstream s;
  s << d.file << " panel " << panel["id"].number() << " \"" << panel["title"].str() << "\"";
  return s.str();
}

bool IsDataPanel(const Json& panel) { return panel["type"].str() != "row" && panel["type"].str() != "text"; }

// The query of a query variable: a string (Grafana 9) or {"query": "..."} (10+).
std::string VariableQuery(const Json& variable) {
  const Json& q = variable["query"];
  return q.type() == Json::Type::kObject ? q["query"].str() : q.str();
}

const Json* Variable(const Json& dashboard, const std::string& name) {
  for (const Json& v : dashboard["templating"]["list"].items()) {
    if (v["name"].str() == name) return &v;
  }
  return nullptr;
}

// label_values(SELECTOR, LABEL) -> {SELECTOR, LABEL}; empty if the query is not of that form.
std::pair<std::string, std::string> SplitLabelValues(const std::string& query) {
  static const std::regex form(R"(^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$)");
  std::smatch m;
  if (!std::regex_match(query, m, form)) return {};
  return {m[1], m[2]};
}

const char* const kStandardVariables[] = {"job", "instance", "datname"};

// Checks the selectors of one expression against the reference and the dashboard's filter variables.
// filters: the standard variables the expression must filter on (in a panel: all the dashboard has).
void CheckSelectors(const std::string& where, const std::string& expr, const std::vector<std::string>& filters,
                    const Reference& ref, std::vector<std::string>& problems) {
  const Scan scan = ScanPromQL(expr);
  for (const auto& p : scan.problems) problems.push_back(where + ": " + p);
  for (const Selector& sel : scan.selectors) {
    if (!ref.Known(sel.metric)) {
      problems.push_back(where + ": " + sel.metric +
                         " is not in queries/METRICS.md nor one of the agent's or "
                         "Prometheus's own metrics");
      continue;
    }
    std::map<std::string, const Matcher*> by_label;
    for (const Matcher& m : sel.matchers) by_label[m.label] = &m;
    for (const std::string& var : filters) {
      if (var == "datname" && !ref.HasDatname(sel.metric)) continue;
      auto it = by_label.find(var);
      const bool ok = it != by_label.end() && it->second->op == "=~" &&
                      (it->second->value == "$" + var || (var == "datname" && it->second->value == "$datname|"));
      if (!ok) {
        problems.push_back(where + ": " + sel.metric + " does not filter " + var + "=~\"$" + var + "\"");
      }
    }
    if (by_label.count("datname") && !ref.HasDatname(sel.metric)) {
      problems.push_back(where + ": " + sel.metric + " has no datname label, so filtering on it empties the panel");
    }
    auto labels = ref.labels.find(sel.metric);
    if (labels == ref.labels.end()) continue;
    for (const Matcher& m : sel.matchers) {
      if (m.label != "job" && m.label != "instance" && m.label != "target" && !labels->second.count(m.label)) {
        problems.push_back(where + ": " + sel.metric + " has no label " + m.label);
      }
    }
  }
}

// ---- The rules, one function each; every problem names the dashboard (and panel, query or variable). ----

std::vector<std::string> IdentityProblems(const Dashboard& d) {
  std::vector<std::string> problems;
  const std::string stem = d.file.substr(0, d.file.size() - std::string(".json").size());
  if (d.json["uid"].str() != stem) {
    problems.push_back(d.file + ": uid is \"" + d.json["uid"].str() + "\", want \"" + stem +
                       "\" (links and provisioning rely on it)");
  }
  if (d.json["title"].str().empty()) problems.push_back(d.file + ": no title");
  const Json& schema = d.json["schemaVersion"];
  if (schema.type() != Json::Type::kNumber || schema.number() < 36 || schema.number() > 39) {
    problems.push_back(d.file + ": schemaVersion must be 36 to 39 so that Grafana 9 to 12 load it");
  }
  if (d.json["id"].type() != Json::Type::kNull) problems.push_back(d.file + ": id must be null or absent");
  return problems;
}

// Walks everything else with a "datasource" member (annotations, links, ...): each must be the variable too.
void DatasourceWalk(const std::string& where, const Json& v, std::vector<std::string>& problems) {
  if (v.type() == Json::Type::kObject) {
    const Json& ds = v["datasource"];
    // Panels (gridPos), queries (refId) and variables (name and type) are checked, and named, by the caller.
    const bool checked = v["gridPos"].type() != Json::Type::kNull || v["refId"].type() != Json::Type::kNull ||
                         (!v["name"].str().empty() && !v["type"].str().empty());
    if (!checked && ds.type() != Json::Type::kNull && !IsDatasourceVariable(ds)) {
      problems.push_back(where + ": \"" + v["name"].str() + "\" has datasource " + Describe(ds) +
                         ", want the ${datasource} variable");
    }
  }
  for (const Json& item : v.items()) DatasourceWalk(where, item, problems);
}

std::vector<std::string> DatasourceProblems(const Dashboard& d) {
  std::vector<std::string> problems;
  const Json* ds = Variable(d.json, "datasource");
  if (!ds || (*ds)["type"].str() != "datasource" || (*ds)["query"].str() != "prometheus") {
    problems.push_back(d.file + ": no variable \"datasource\" of type datasource with query prometheus");
  }
  for (const Json* panel : Panels(d.json)) {
    if (!IsDataPanel(*panel)) continue;
    if (!IsDatasourceVariable((*panel)["datasource"])) {
      problems.push_back(PanelName(d, *panel) + ": datasource is " + Describe((*panel)["datasource"]) +
                         ", want the ${datasource} variable");
    }
    for (const Json& t : (*panel)["targets"].items()) {
      if (!IsDatasourceVariable(t["datasource"])) {
        problems.push_back(PanelName(d, *panel) + " query " + t["refId"].str() + ": datasource is " +
                           Describe(t["datasource"]) + ", want the ${datasource} variable");
      }
    }
  }
  for (const Json& v : d.json["templating"]["list"].items()) {
    const bool has_datasource = v["type"].str() == "query" || v["datasource"].type() != Json::Type::kNull;
    if (has_datasource && !IsDatasourceVariable(v["datasource"])) {
      problems.push_back(d.file + " variable " + v["name"].str() + ": datasource is " + Describe(v["datasource"]) +
                         ", want the ${datasource} variable");
    }
  }
  DatasourceWalk(d.file, d.json, problems);
  // Grafana's "export for sharing externally" puts ${DS_...} placeholders and __inputs in; they need a manual pick.
  if (!d.json["__inputs"].items().empty()) problems.push_back(d.file + ": __inputs must be empty or absent");
  return problems;
}

bool UsesDatnameMetric(const Dashboard& d, const Reference& ref) {
  for (const Json* panel : Panels(d.json)) {
    for (const Json& t : (*panel)["targets"].items()) {
      for (const Selector& s : ScanPromQL(t["expr"].str()).selectors) {
        if (ref.HasDatname(s.metric)) return true;
      }
    }
  }
  return false;
}

std::vector<std::string> VariableProblems(const Dashboard& d, const Reference& ref) {
  std::vector<std::string> problems;
  std::vector<std::string> required = {"job", "instance"};
  if (UsesDatnameMetric(d, ref)) required.push_back("datname");
  for (const std::string& name : required) {
    const Json* v = Variable(d.json, name);
    if (!v) {
      problems.push_back(d.file + ": no variable \"" + name + "\"");
      continue;
    }
    const std::string where = d.file + " variable " + name;
    if ((*v)["type"].str() != "query") problems.push_back(where + ": type must be query");
    if (!(*v)["multi"].boolean() || !(*v)["includeAll"].boolean()) {
      problems.push_back(where + ": must be multi-select with include-all");
    }
    const auto [selector, label] = SplitLabelValues(VariableQuery(*v));
    if (label != name) {
      problems.push_back(where + ": query must be label_values(<pgpulse metric>, " + name + "), is \"" +
                         VariableQuery(*v) + "\"");
      continue;
    }
    for (const Selector& s : ScanPromQL(selector).selectors) {
      if (s.metric.rfind("pg_", 0) != 0 && s.metric.rfind("pgpulse_", 0) != 0 && s.metric.rfind("pgbouncer_", 0) != 0 &&
          s.metric.rfind("pgbackrest_", 0) != 0) {
        problems.push_back(where + ": values come from " + s.metric +
                           ", not from pgpulse's own metrics (pg_*, pgbouncer_*, pgbackrest_*, pgpulse_*)");
      }
    }
  }
  // Each query variable filters on the standard variables before it (instance on job, datname on both, ...).
  std::vector<std::string> before;
  for (const Json& v : d.json["templating"]["list"].items()) {
    if (v["type"].str() != "query") continue;
    const std::string where = d.file + " variable " + v["name"].str();
    const auto [selector, label] = SplitLabelValues(VariableQuery(v));
    if (label.empty()) {
      problems.push_back(where + ": query is not label_values(...): \"" + VariableQuery(v) + "\"");
    } else {
      CheckSelectors(where, selector, before, ref, problems);
    }
    if (v["definition"].type() != Json::Type::kNull && v["definition"].str() != VariableQuery(v)) {
      problems.push_back(where + ": definition differs from query");
    }
    for (const char* standard : kStandardVariables) {
      if (v["name"].str() == standard) before.push_back(standard);
    }
  }
  return problems;
}

std::vector<std::string> PanelProblems(const Dashboard& d) {
  static const std::set<std::string> kTypes = {"timeseries", "stat", "gauge", "bargauge", "table", "row", "text"};
  std::vector<std::string> problems;
  std::set<double> ids;
  for (const Json* panel : Panels(d.json)) {
    const std::string where = PanelName(d, *panel);
    if (!kTypes.count((*panel)["type"].str())) {
      problems.push_back(where + ": type \"" + (*panel)["type"].str() +
                         "\" is not one of timeseries, stat, gauge, bargauge, table, row, text");
    }
    if ((*panel)["id"].type() != Json::Type::kNumber || !ids.insert((*panel)["id"].number()).second) {
      problems.push_back(where + ": id missing or not unique");
    }
    const Json& pos = (*panel)["gridPos"];
    if (pos["w"].number() <= 0 || pos["h"].number() <= 0 || pos["x"].number() + pos["w"].number() > 24) {
      problems.push_back(where + ": gridPos must have w > 0, h > 0 and x + w <= 24");
    }
    if ((*panel)["libraryPanel"].type() != Json::Type::kNull) {
      problems.push_back(where + ": library panels do not import into another Grafana");
    }
    if (!IsDataPanel(*panel)) continue;
    if ((*panel)["title"].str().empty()) problems.push_back(where + ": no title");
    if ((*panel)["fieldConfig"]["defaults"]["unit"].str().empty()) {
      problems.push_back(where + ": no unit (fieldConfig.defaults.unit)");
    }
    if ((*panel)["targets"].items().empty()) problems.push_back(where + ": no queries");
    std::set<std::string> refs;
    for (const Json& t : (*panel)["targets"].items()) {
      if (t["refId"].str().empty() || !refs.insert(t["refId"].str()).second) {
        problems.push_back(where + ": a query without a refId or with a repeated one");
      }
      if (t["expr"].str().empty()) problems.push_back(where + " query " + t["refId"].str() + ": no expr");
    }
  }
  return problems;
}

// Filters on the variables, rates over $__rate_interval, and only metrics pgpulse or Prometheus export.
std::vector<std::string> QueryProblems(const Dashboard& d, const Reference& ref) {
  std::vector<std::string> problems;
  // datname only binds metrics with that label; a dashboard using one without the variable fails VariableProblems.
  const std::vector<std::string> filters(std::begin(kStandardVariables), std::end(kStandardVariables));
  for (const Json* panel : Panels(d.json)) {
    for (const Json& t : (*panel)["targets"].items()) {
      CheckSelectors(PanelName(d, *panel) + " query " + t["refId"].str(), t["expr"].str(), filters, ref, problems);
    }
  }
  for (const Json& a : d.json["annotations"]["list"].items()) {
    if (!a["expr"].str().empty()) {
      CheckSelectors(d.file + " annotation " + a["name"].str(), a["expr"].str(), filters, ref, problems);
    }
  }
  return problems;
}

// ---- The target variable: agents with several targets label every sample target, one target has no label. ----

// Metrics that carry the target label when the agent has several targets (the agent's own per-target ones always).
bool HasTargetLabel(const std::string& metric) {
  for (const char* prefix : {"pg_", "pgbouncer_", "pgbackrest_", "pgpulse_collector", "pgpulse_scrape"}) {
    if (metric.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

void CheckTargetFilter(const std::string& where, const std::string& expr, std::vector<std::string>& problems) {
  for (const Selector& sel : ScanPromQL(expr).selectors) {
    if (!HasTargetLabel(sel.metric)) continue;
    const bool ok = std::any_of(sel.matchers.begin(), sel.matchers.end(), [](const Matcher& m) {
      return m.label == "target" && m.op == "=~" && m.value == "$target";
    });
    if (!ok) problems.push_back(where + ": " + sel.metric + " does not filter target=~\"$target\"");
  }
}

// A query variable `target` (All = ".*", which also matches a series without the label, so single-target agents
// keep their data), and every selector of a metric with that label filtered on it.
std::vector<std::string> TargetProblems(const Dashboard& d) {
  std::vector<std::string> problems;
  const Json* v = Variable(d.json, "target");
  if (!v) {
    problems.push_back(d.file + ": no variable \"target\"");
  } else {
    const std::string where = d.file + " variable target";
    if ((*v)["type"].str() != "query" || !(*v)["multi"].boolean() || !(*v)["includeAll"].boolean()) {
      problems.push_back(where + ": must be a multi-select query variable with include-all");
    }
    if ((*v)["allValue"].str() != ".*") {
      problems.push_back(where +
                         ": allValue must be \".*\" (matches the series of single-target agents, which "
                         "have no target label)");
    }
    const auto [selector, label] = SplitLabelValues(VariableQuery(*v));
    if (label != "target" || selector.find("job=~\"$job\"") == std::string::npos ||
        selector.find("instance=~\"$instance\"") == std::string::npos) {
      problems.push_back(where +
                         ": query must be label_values(<metric>{job=~\"$job\",instance=~\"$instance\"}, "
                         "target), is \"" +
                         VariableQuery(*v) + "\"");
    }
  }
  bool after_target = false;
  for (const Json& var : d.json["templating"]["list"].items()) {
    if (after_target && var["type"].str() == "query") {
      CheckTargetFilter(d.file + " variable " + var["name"].str(), VariableQuery(var), problems);
    }
    after_target = after_target || var["name"].str() == "target";
  }
  for (const Json* panel : Panels(d.json)) {
    for (const Json& t : (*panel)["targets"].items()) {
      CheckTargetFilter(PanelName(d, *panel) + " query " + t["refId"].str(), t["expr"].str(), problems);
    }
  }
  for (const Json& a : d.json["annotations"]["list"].items()) {
    CheckTargetFilter(d.file + " annotation " + a["name"].str(), a["expr"].str(), problems);
  }
  return problems;
}

// ---- Thresholds: a panel linking to an alert's runbook section colours where that alert fires. ----

// alerts/thresholds.yaml (or a site file): key -> value as written.
std::map<std::string, std::string> ReadThresholds(const std::string& path) {
  std::map<std::string, std::string> out;
  std::istringstream in(ReadFile(path));
  const std::regex entry(R"(^([a-z0-9_]+):\s*([^#\s]+))");
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, entry)) out[m[1]] = m[2];
  }
  return out;
}

// Alert name -> the threshold keys its rule compares against: the @@key@@ placeholders of its block in
// pgpulse-rules.yml.in, without durations, windows, floors below which it stays silent ("min") and non-numbers.
std::map<std::string, std::set<std::string>> AlertThresholdKeys() {
  std::map<std::string, std::set<std::string>> out;
  std::istringstream in(ReadFile(kSourceDir + "/alerts/pgpulse-rules.yml.in"));
  const std::regex alert(R"(^\s*- alert:\s*([A-Za-z0-9]+))");
  const std::regex key(R"(@@([a-z0-9_]+)@@)");
  const std::regex ignored(R"((_for|_window)$|(^|_)min(_|$)|horizon|runbook_url|regex)");
  std::string line, current;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, alert)) {
      current = m[1];
      out[current];
      continue;
    }
    if (current.empty() || line.find("_url:") != std::string::npos) continue;  // runbook_url, dashboard_url
    for (auto it = std::sregex_iterator(line.begin(), line.end(), key); it != std::sregex_iterator(); ++it) {
      if (!std::regex_search((*it)[1].str(), ignored)) out[current].insert((*it)[1]);
    }
  }
  return out;
}

bool SameNumber(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b)); }

std::string FormatNumber(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Every alert a panel links to (runbooks.md#<alert in lower case>) must have each of its thresholds drawn as a step
// (or written into the panel's query), and every step must be one of those thresholds.
std::vector<std::string> ThresholdProblems(const Dashboard& d, const std::map<std::string, std::string>& thresholds,
                                           const std::map<std::string, std::set<std::string>>& alerts) {
  std::vector<std::string> problems;
  std::map<std::string, std::string> by_anchor;
  for (const auto& [name, keys] : alerts) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    by_anchor[lower] = name;
  }
  const std::regex number(R"((^|[^A-Za-z0-9_.$])([0-9]+(\.[0-9]+)?([eE][0-9]+)?)\b)");
  for (const Json* panel : Panels(d.json)) {
    const std::string where = PanelName(d, *panel);
    std::vector<std::string> linked;
    for (const Json& l : (*panel)["links"].items()) {
      const std::string url = l["url"].str();
      const size_t hash = url.find("runbooks.md#");
      if (hash == std::string::npos) continue;
      auto it = by_anchor.find(url.substr(hash + std::string("runbooks.md#").size()));
      if (it == by_anchor.end()) {
        problems.push_back(where + ": links to " + url + ", a runbook section of no alert");
      } else {
        linked.push_back(it->second);
      }
    }
    std::vector<double> steps;
    for (const Json& s : (*panel)["fieldConfig"]["defaults"]["thresholds"]["steps"].items()) {
      if (s["value"].type() == Json::Type::kNumber) steps.push_back(s["value"].number());
    }
    std::vector<double> in_queries;
    for (const Json& t : (*panel)["targets"].items()) {
      const std::string expr = t["expr"].str();
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), number); it != std::sregex_iterator(); ++it) {
        in_queries.push_back(std::stod((*it)[2].str()));
      }
    }
    std::vector<double> wanted;
    std::string wanted_text;
    for (const std::string& alert : linked) {
      for (const std::string& key : alerts.at(alert)) {
        auto value = thresholds.find(key);
        if (value == thresholds.end()) {
          problems.push_back(where + ": " + alert + " uses " + key + ", which the thresholds do not set");
          continue;
        }
        const double v = std::stod(value->second);
        wanted.push_back(v);
        wanted_text += " " + alert + " " + key + "=" + value->second;
        const auto same = [v](double x) { return SameNumber(x, v); };
        if (std::none_of(steps.begin(), steps.end(), same) &&
            std::none_of(in_queries.begin(), in_queries.end(), same)) {
          problems.push_back(where + ": " + alert + " fires at " + key + "=" + value->second +
                             ", which no threshold step of the panel (nor its query) has");
        }
      }
    }
    if (wanted.empty()) continue;
    for (double step : steps) {
      if (std::none_of(wanted.begin(), wanted.end(), [step](double v) { return SameNumber(step, v); })) {
        problems.push_back(where + ": threshold step " + FormatNumber(step) + " is none of its alerts' thresholds (" +
                           wanted_text.substr(1) + ")");
      }
    }
  }
  return problems;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "  " + l + "\n";
  return out;
}

class DashboardsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new Reference(LoadReference());
    dashboards_ = new std::vector<Dashboard>(LoadDashboards());
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete dashboards_;
  }

  // Runs check on every dashboard and fails once per dashboard with all its problems.
  template <typename Check>
  void ExpectNoProblems(Check check) {
    ASSERT_FALSE(dashboards_->empty());
    for (const Dashboard& d : *dashboards_) {
      const std::vector<std::string> problems = check(d);
      EXPECT_TRUE(problems.empty()) << problems.size() << " problem(s) in " << d.file << ":\n" << Join(problems);
    }
  }

  static Reference* reference_;
  static std::vector<Dashboard>* dashboards_;
};

Reference* DashboardsTest::reference_ = nullptr;
std::vector<Dashboard>* DashboardsTest::dashboards_ = nullptr;

TEST_F(DashboardsTest, ShipsEveryDashboardAndEachParses) {
  std::vector<std::string> errors;
  LoadDashboards(&errors);
  EXPECT_TRUE(errors.empty()) << Join(errors);
  std::set<std::string> files;
  for (const Dashboard& d : *dashboards_) files.insert(d.file);
  for (const char* want : {"pgpulse-overview.json", "pgpulse-queries.json", "pgpulse-tables.json", "pgpulse-locks.json",
                           "pgpulse-replication.json", "pgpulse-agent.json", "pgpulse-pgbouncer.json",
                           "pgpulse-disk.json", "pgpulse-backups.json", "pgpulse-fleet.json"}) {
    EXPECT_TRUE(files.count(want)) << "dashboards/" << want << " is missing";
  }
}

TEST_F(DashboardsTest, EachHasAStableUidAndASchemaVersionGrafana9To12Load) {
  ExpectNoProblems(IdentityProblems);
  std::set<std::string> uids;
  for (const Dashboard& d : *dashboards_) {
    EXPECT_TRUE(uids.insert(d.json["uid"].str()).second) << d.file << ": uid repeats another dashboard's";
  }
}

TEST_F(DashboardsTest, EveryPanelQueryAndVariableUsesTheDatasourceVariable) { ExpectNoProblems(DatasourceProblems); }

TEST_F(DashboardsTest, JobInstanceAndDatnameVariablesComeFromPgpulseMetricsAndAllowAll) {
  ExpectNoProblems([](const Dashboard& d) { return VariableProblems(d, *reference_); });
}

TEST_F(DashboardsTest, PanelsAreCurrentTypesWithUnits) { ExpectNoProblems(PanelProblems); }

TEST_F(DashboardsTest, EveryQueryFiltersOnTheVariablesUsesRateIntervalAndNamesExportedMetrics) {
  ExpectNoProblems([](const Dashboard& d) { return QueryProblems(d, *reference_); });
}

TEST_F(DashboardsTest, ReferenceKnowsTheMetricsTheChecksRelyOn) {
  EXPECT_TRUE(reference_->HasDatname("pg_database_size_bytes"));
  EXPECT_FALSE(reference_->HasDatname("pg_wal_bytes_total"));
  EXPECT_TRUE(reference_->labels.at("pg_locks").count("granted"));
  EXPECT_TRUE(reference_->other.count("pgpulse_collector_success"));
  EXPECT_TRUE(reference_->other.count("pgpulse_scrape_duration_seconds_bucket"));
  EXPECT_TRUE(reference_->other.count("process_resident_memory_bytes"));
  // The pgBackRest source's metrics come from queries/METRICS.md like the SQL collectors', labels included.
  auto has_label = [&](const std::string& metric, const std::string& label) {
    auto it = reference_->labels.find(metric);
    return it != reference_->labels.end() && it->second.count(label) > 0;
  };
  EXPECT_TRUE(has_label("pgbackrest_backup_last_completion_timestamp_seconds", "type"));
  EXPECT_TRUE(has_label("pgbackrest_up", "stanza"));
  EXPECT_GT(reference_->labels.size(), 100u);
}

// The checks above pass only if they can fail: a dashboard breaking each rule once is caught, by name.
TEST_F(DashboardsTest, ChecksCatchABrokenDashboard) {
  const Dashboard broken{"pgpulse-broken.json", Json::Parse(R"json({
    "uid": "abc123", "title": "Broken", "schemaVersion": 27,
    "templating": {"list": [
      {"name": "job", "type": "query", "datasource": "Prometheus", "query": "label_values(up, job)",
       "multi": false, "includeAll": false}
    ]},
    "panels": [
      {"id": 1, "type": "graph", "title": "Old graph", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
       "datasource": {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"},
       "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"},
                    "expr": "rate(pg_database_xact_commit_total{job=~\"$job\"}[5m]) + pg_renamed_metric{instance=~\"$instance\"}"}]},
      {"id": 2, "type": "stat", "title": "No unit", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 4},
       "datasource": {"type": "prometheus", "uid": "${datasource}"}, "fieldConfig": {"defaults": {}},
       "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": "pg_wal_bytes_total{job=~\"$job\",instance=~\"$instance\",datname=~\"$datname\"}"}]}
    ]})json")};
  const auto all = [&] {
    std::vector<std::string> p = IdentityProblems(broken);
    for (auto more : {DatasourceProblems(broken), VariableProblems(broken, *reference_), PanelProblems(broken),
                      QueryProblems(broken, *reference_)}) {
      p.insert(p.end(), more.begin(), more.end());
    }
    return p;
  }();
  const std::string text = Join(all);
  for (const char* want :
       {"uid is \"abc123\"", "schemaVersion must be 36 to 39", "no variable \"datasource\"",
        "panel 1 \"Old graph\": datasource is {type: \"prometheus\", uid: \"P1809F7CD0C75ACF3\"}",
        "variable job: datasource is \"Prometheus\"", "variable job: must be multi-select with include-all",
        "variable job: values come from up", "no variable \"instance\"", "no variable \"datname\"",
        "type \"graph\" is not one of", "panel 2 \"No unit\": no unit", "rate() over [5m], not [$__rate_interval]",
        "pg_renamed_metric is not in queries/METRICS.md", "pg_database_xact_commit_total does not filter instance",
        "pg_wal_bytes_total has no datname label"}) {
    EXPECT_NE(text.find(want), std::string::npos) << "missing \"" << want << "\" in:\n" << text;
  }
}

TEST_F(DashboardsTest, EveryDashboardHasATargetVariableThatEveryPgpulseSelectorFiltersOn) {
  ExpectNoProblems(TargetProblems);
}

TEST_F(DashboardsTest, TargetCheckCatchesAMissingVariableAndAnUnfilteredSelector) {
  const Dashboard broken{"pgpulse-broken.json", Json::Parse(R"json({
    "templating": {"list": [{"name": "target", "type": "query", "multi": true, "includeAll": true, "allValue": "",
                             "query": "label_values(pg_up{job=~\"$job\"}, target)"},
                            {"name": "datname", "type": "query",
                             "query": "label_values(pg_database_size_bytes{job=~\"$job\"}, datname)"}]},
    "panels": [{"id": 1, "type": "stat", "title": "Up", "targets": [{"refId": "A",
                "expr": "pg_up{job=~\"$job\",target=~\"$target\"} or up{job=~\"$job\"} + pgbouncer_up{target=\"x\"}"}]}]
  })json")};
  const std::string text = Join(TargetProblems(broken));
  for (const char* want : {"allValue must be \".*\"", "query must be label_values(<metric>{job=~\"$job\",instance",
                           "variable datname: pg_database_size_bytes does not filter target",
                           "\"Up\" query A: pgbouncer_up does not filter target"}) {
    EXPECT_NE(text.find(want), std::string::npos) << "missing \"" << want << "\" in:\n" << text;
  }
  EXPECT_EQ(text.find("pg_up does not"), std::string::npos) << text;
  EXPECT_EQ(text.find(": up does not"), std::string::npos) << "up has no target label:\n" << text;
  EXPECT_NE(Join(TargetProblems({"x.json", Json::Parse(R"({"panels": []})")})).find("no variable \"target\""),
            std::string::npos);
}

TEST_F(DashboardsTest, EveryStatTileQueriesTheValueNowAndNeverShowsNothing) {
  int tiles = 0;
  ExpectNoProblems([&tiles](const Dashboard& d) {
    std::vector<std::string> problems;
    for (const Json* panel : Panels(d.json)) {
      const std::string type = (*panel)["type"].str();
      if (type != "stat" && type != "gauge") continue;
      ++tiles;
      // A range query reduced to its last value keeps a dead server's last "up" for the whole range.
      for (const Json& t : (*panel)["targets"].items()) {
        if (!t["instant"].boolean() || t["range"].boolean()) {
          problems.push_back(PanelName(d, *panel) + " query " + t["refId"].str() +
                             ": a tile must query instantly (instant: true, range: false)");
        }
      }
      if ((*panel)["fieldConfig"]["defaults"]["noValue"].str().empty()) {
        problems.push_back(PanelName(d, *panel) + ": no noValue text, so an empty tile is ambiguous");
      }
    }
    return problems;
  });
  EXPECT_GT(tiles, 30);
}

// topk() alone picks a new top set at every step, so an hour of "top 5" draws dozens of series; ranking once, on
// the average over the whole range (@ end()), keeps the same N lines across the graph.
TEST_F(DashboardsTest, TopNPanelsRankOnceOverTheRange) {
  int top_n = 0;
  ExpectNoProblems([&top_n](const Dashboard& d) {
    std::vector<std::string> problems;
    for (const Json* panel : Panels(d.json)) {
      if ((*panel)["title"].str().rfind("Top $topn", 0) != 0) continue;
      ++top_n;
      for (const Json& t : (*panel)["targets"].items()) {
        const std::string expr = t["expr"].str();
        if (expr.find("and topk($topn, avg_over_time(") == std::string::npos ||
            expr.find("[$__range:$__interval] @ end()))") == std::string::npos) {
          problems.push_back(PanelName(d, *panel) + ": picks its top set per step, not once over the range");
        }
      }
    }
    return problems;
  });
  EXPECT_GE(top_n, 14);
}

TEST_F(DashboardsTest, PostgreSQLDashboardsMarkRestartsAndFailovers) {
  int marked = 0;
  for (const Dashboard& d : *dashboards_) {
    std::set<std::string> names;
    for (const Json& a : d.json["annotations"]["list"].items()) names.insert(a["name"].str());
    const bool of_servers = VariableQuery(*Variable(d.json, "instance")).find("pg_up") != std::string::npos;
    EXPECT_EQ(of_servers, names.count("Restarts") == 1 && names.count("Failovers") == 1) << d.file;
    marked += of_servers;
  }
  EXPECT_GE(marked, 6);
}

TEST_F(DashboardsTest, OverviewHealthStripMirrorsTheAlerts) {
  const Dashboard* overview = nullptr;
  for (const Dashboard& d : *dashboards_) {
    if (d.file == "pgpulse-overview.json") overview = &d;
  }
  ASSERT_NE(overview, nullptr);
  std::map<std::string, const Json*> by_title;
  for (const Json* panel : Panels(overview->json)) by_title[(*panel)["title"].str()] = panel;
  for (const char* title :
       {"Up", "Firing alerts", "Connections used", "Worst replay lag", "WAL receiver", "Longest transaction",
        "Longest lock wait", "Wraparound", "Filesystem free", "Archiving", "Failing collectors", "Blocked sessions"}) {
    auto it = by_title.find(title);
    if (it == by_title.end()) {
      ADD_FAILURE() << "the overview has no tile \"" << title << "\"";
      continue;
    }
    const Json& panel = *it->second;
    EXPECT_TRUE(panel["type"].str() == "stat" || panel["type"].str() == "gauge") << title;
    EXPECT_LT(panel["gridPos"]["y"].number(), 13) << title << " is not in the strip at the top";
    ASSERT_FALSE(panel["targets"].items().empty()) << title;
    const std::string expr = panel["targets"].items().front()["expr"].str();
    if (std::string(title) == "Firing alerts") {
      EXPECT_NE(expr.find("ALERTS{alertstate=\"firing\""), std::string::npos) << expr;
      EXPECT_NE(expr.find("or on (instance) (0 * up{"), std::string::npos) << "0 must be a value, not no data";
    } else if (std::string(title) != "Blocked sessions") {
      bool runbook = false;
      for (const Json& l : panel["links"].items()) runbook |= l["url"].str().find("runbooks.md#") != std::string::npos;
      EXPECT_TRUE(runbook) << title << " links to no alert's runbook section";
    }
  }
}

// A disconnected standby leaves pg_stat_replication, so its lag lines vanish: the overview counts the standbys
// expected (physical slots, or the most seen at once over the range) that do not stream now.
// What a tile shows and how it colours it, as text: queries, unit, threshold steps, mappings, links.
std::string TileShape(const Json& tile) {
  std::ostringstream s;
  for (const Json& t : tile["targets"].items()) s << "expr " << t["expr"].str() << "\n";
  const Json& defaults = tile["fieldConfig"]["defaults"];
  s << "unit " << defaults["unit"].str() << "\n";
  for (const Json& step : defaults["thresholds"]["steps"].items()) {
    s << "step " << step["color"].str() << " " << step["value"].number() << "\n";
  }
  for (const Json& m : defaults["mappings"].items()) {
    s << "mapping " << m["type"].str();
    for (const Json& o : m["options"].items()) s << " " << o["text"].str() << "/" << o["color"].str();
    s << "\n";
  }
  for (const Json& l : tile["links"].items()) s << "link " << l["title"].str() << " " << l["url"].str() << "\n";
  return s.str();
}

// The fleet view: one line of tiles per server (a row repeated per instance), each tile the overview's own.
TEST_F(DashboardsTest, FleetRepeatsTheOverviewHealthStripPerInstance) {
  const Dashboard *overview = nullptr, *fleet = nullptr;
  for (const Dashboard& d : *dashboards_) {
    if (d.file == "pgpulse-overview.json") overview = &d;
    if (d.file == "pgpulse-fleet.json") fleet = &d;
  }
  ASSERT_NE(overview, nullptr);
  ASSERT_NE(fleet, nullptr);
  const std::vector<Json>& panels = fleet->json["panels"].items();
  ASSERT_GE(panels.size(), 2u);
  EXPECT_EQ(panels[0]["type"].str(), "row");
  EXPECT_EQ(panels[0]["repeat"].str(), "instance") << "one row per server";
  EXPECT_NE(panels[0]["title"].str().find("$instance"), std::string::npos) << "the row names its server";
  const Json* instance = Variable(fleet->json, "instance");
  ASSERT_NE(instance, nullptr);
  EXPECT_TRUE((*instance)["multi"].boolean() && (*instance)["includeAll"].boolean()) << "a row per value needs All";
  // The health strip (the tiles generate.py owns, ids 40 to 49) and the status tiles Up and Connections used.
  std::map<std::string, const Json*> wanted;
  for (const Json& p : overview->json["panels"].items()) {
    const double id = p["id"].number();
    if ((id >= 40 && id <= 49) || p["title"].str() == "Up" || p["title"].str() == "Connections used") {
      wanted[p["title"].str()] = &p;
    }
  }
  EXPECT_EQ(wanted.size(), 12u);
  double width = 0;
  for (size_t i = 1; i < panels.size(); ++i) {
    const Json& tile = panels[i];
    const std::string title = tile["title"].str();
    EXPECT_EQ(tile["type"].str(), "stat") << title;
    EXPECT_EQ(tile["gridPos"]["y"].number(), panels[1]["gridPos"]["y"].number()) << title << ": not on the line";
    EXPECT_EQ(tile["options"]["colorMode"].str(), "background") << title << ": a cell coloured by its state";
    width += tile["gridPos"]["w"].number();
    auto it = wanted.find(title);
    if (it == wanted.end()) {
      ADD_FAILURE() << "pgpulse-fleet.json tile \"" << title << "\" is not one of the overview's health tiles";
      continue;
    }
    EXPECT_EQ(TileShape(tile), TileShape(*it->second)) << title << ": differs from the overview's tile";
    wanted.erase(it);
  }
  EXPECT_LE(width, 24) << "a server's tiles fit on one line";
  for (const auto& [title, p] : wanted) ADD_FAILURE() << "pgpulse-fleet.json lacks the overview's tile " << title;
}

TEST_F(DashboardsTest, OverviewCountsStandbysNotStreamingAgainstTheExpected) {
  const Json* tile = nullptr;
  for (const Dashboard& d : *dashboards_) {
    if (d.file != "pgpulse-overview.json") continue;
    for (const Json* panel : Panels(d.json)) {
      if ((*panel)["title"].str() == "Standbys not streaming") tile = panel;
    }
  }
  ASSERT_NE(tile, nullptr) << "the overview has no \"Standbys not streaming\" tile";
  EXPECT_EQ((*tile)["type"].str(), "stat");
  EXPECT_LT((*tile)["gridPos"]["y"].number(), 13) << "not in the strip at the top";
  const std::string expr = (*tile)["targets"].items().front()["expr"].str();
  for (const char* part : {"pg_replication_slot_active{", "slot_type=\"physical\"",
                           "max_over_time(count by (instance, target) (pg_replication_standby_info{", "[$__range:]",
                           "state=\"streaming\"", "clamp_min(", "(NaN * up{"}) {
    EXPECT_NE(expr.find(part), std::string::npos) << "no " << part << " in\n" << expr;
  }
  const auto& steps = (*tile)["fieldConfig"]["defaults"]["thresholds"]["steps"].items();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[1]["color"].str(), "red");
  EXPECT_EQ(steps[1]["value"].number(), 1) << "one standby missing is red";
}

// Sessions idle in transaction, locks awaited and blocked sessions have no series when the truth is 0: their
// graphs add a 0 per server (or per database) that answered, never for one that is down.
TEST_F(DashboardsTest, LocksGraphsDrawZeroWhereTheServerAnswersAndNothingWhereItIsDown) {
  int checked = 0;
  for (const Dashboard& d : *dashboards_) {
    if (d.file != "pgpulse-locks.json") continue;
    for (const Json* panel : Panels(d.json)) {
      const std::string title = (*panel)["title"].str();
      if (title != "Blocked sessions" && title != "Locks awaited" && title != "Sessions idle in transaction") continue;
      ++checked;
      const std::string expr = (*panel)["targets"].items().front()["expr"].str();
      EXPECT_NE(expr.find("or on (instance, target"), std::string::npos) << title << ": no fallback in\n" << expr;
      EXPECT_NE(expr.find("(pg_up{job=~\"$job\",instance=~\"$instance\",target=~\"$target\"} == 1)"), std::string::npos)
          << title << ": the 0 is not limited to servers that answered:\n"
          << expr;
      EXPECT_EQ(expr.find("vector(0)"), std::string::npos) << title << ": an unscoped 0";
      EXPECT_EQ(expr.find(" up{"), std::string::npos) << title << ": the agent's up is no proof the server answered";
    }
  }
  EXPECT_EQ(checked, 3);
}

TEST_F(DashboardsTest, PanelThresholdsAreTheThresholdsOfTheAlertsTheyLinkTo) {
  const auto thresholds = ReadThresholds(kSourceDir + "/alerts/thresholds.yaml");
  const auto alerts = AlertThresholdKeys();
  ASSERT_EQ(alerts.at("PostgreSQLConnectionsNearLimit"), std::set<std::string>{"connections_warning_ratio"});
  ASSERT_EQ(alerts.at("PostgreSQLLowCacheHitRatio"), std::set<std::string>{"cache_hit_ratio"});
  int linked = 0;
  for (const Dashboard& d : *dashboards_) {
    for (const Json* panel : Panels(d.json)) {
      for (const Json& l : (*panel)["links"].items()) {
        linked += l["url"].str().find("runbooks.md#") != std::string::npos;
      }
    }
  }
  EXPECT_GE(linked, 30) << "panels link to alerts' runbook sections; the check below needs those links";
  ExpectNoProblems([&](const Dashboard& d) { return ThresholdProblems(d, thresholds, alerts); });
}

// A panel coloured at its own numbers (the old 0.75/0.9 connections gauge) or linking to an alert that does not
// exist is caught by name.
TEST_F(DashboardsTest, ThresholdCheckCatchesAPanelThatDisagreesWithItsAlert) {
  const Dashboard broken{"pgpulse-broken.json", Json::Parse(R"json({"panels": [
      {"id": 6, "type": "gauge", "title": "Connections used",
       "links": [{"url": "https://x/alerts/runbooks.md#postgresqlconnectionsnearlimit"},
                 {"url": "https://x/alerts/runbooks.md#postgresqlconnectionsexhausted"},
                 {"url": "https://x/alerts/runbooks.md#postgresqlnosuchalert"}],
       "fieldConfig": {"defaults": {"thresholds": {"steps": [
           {"color": "green", "value": null}, {"color": "orange", "value": 0.75}, {"color": "red", "value": 0.95}]}}},
       "targets": [{"refId": "A", "expr": "pg_connections / pg_connections_max"}]}]})json")};
  const std::string text =
      Join(ThresholdProblems(broken, ReadThresholds(kSourceDir + "/alerts/thresholds.yaml"), AlertThresholdKeys()));
  for (const char* want : {"PostgreSQLConnectionsNearLimit fires at connections_warning_ratio=0.8",
                           "threshold step 0.75 is none of its alerts' thresholds",
                           "links to https://x/alerts/runbooks.md#postgresqlnosuchalert, a runbook section of no"}) {
    EXPECT_NE(text.find(want), std::string::npos) << "missing \"" << want << "\" in:\n" << text;
  }
  EXPECT_EQ(text.find("fires at connections_critical_ratio"), std::string::npos) << "0.95 is drawn:\n" << text;
}

// A site that regenerates its rules with other thresholds gets dashboards coloured at those.
TEST_F(DashboardsTest, GeneratorGivesDashboardsTheThresholdsOfASiteFile) {
  const std::string site =
      WriteTempFile("dashboards_site_thresholds.yaml", "connections_warning_ratio: 0.7\narchive_stale_seconds: 7200\n");
  const std::string out = std::filesystem::path(site).parent_path().string() + "/site";
  const CommandResult r = RunCommand(
      {"bash", kSourceDir + "/alerts/generate.sh", "--thresholds", site, "--out", out, "--dashboards", out + "/d"});
  ASSERT_EQ(r.exit_status, 0) << r.output;
  auto thresholds = ReadThresholds(kSourceDir + "/alerts/thresholds.yaml");
  const auto stock = thresholds;
  thresholds["connections_warning_ratio"] = "0.7";
  thresholds["archive_stale_seconds"] = "7200";
  std::vector<std::string> errors;
  const std::vector<Dashboard> generated = LoadDashboards(&errors, out + "/d");
  ASSERT_TRUE(errors.empty()) << Join(errors);
  ASSERT_EQ(generated.size(), dashboards_->size());
  std::vector<std::string> against_site, against_stock;
  for (const Dashboard& d : generated) {
    for (const auto& p : ThresholdProblems(d, thresholds, AlertThresholdKeys())) against_site.push_back(p);
    for (const auto& p : ThresholdProblems(d, stock, AlertThresholdKeys())) against_stock.push_back(p);
  }
  EXPECT_TRUE(against_site.empty()) << Join(against_site);
  const std::string stale = Join(against_stock);
  EXPECT_NE(stale.find("\"Connections used\": threshold step 0.7 is none"), std::string::npos) << stale;
  EXPECT_NE(stale.find("\"Archiving\": PostgreSQLArchivingStale fires at archive_stale_seconds=3600"),
            std::string::npos)
      << stale;
  const std::string rules = ReadFile(out + "/pgpulse-rules.yml");
  EXPECT_NE(rules.find("> 7200"), std::string::npos) << "the rules and the dashboards come from one run";
  std::filesystem::remove_all(out);
}

// The rules' expressions, from the generated rule file: "expr: X" or "expr: |" and the lines indented below it.
std::map<std::string, std::string> AlertExpressions() {
  std::map<std::string, std::string> out;
  std::istringstream in(ReadFile(kSourceDir + "/alerts/pgpulse-rules.yml"));
  const std::regex alert(R"(^\s*- alert:\s*([A-Za-z0-9]+))");
  const std::regex expr(R"(^(\s*)expr:\s*(.*)$)");
  std::string line, current;
  size_t block_indent = std::string::npos;  // inside "expr: |": lines indented deeper than the key
  while (std::getline(in, line)) {
    std::smatch m;
    const size_t indent = line.find_first_not_of(' ');
    if (block_indent != std::string::npos) {
      if (indent != std::string::npos && indent > block_indent) {
        out[current] += line + "\n";
        continue;
      }
      block_indent = std::string::npos;
    }
    if (std::regex_search(line, m, alert)) {
      current = m[1];
    } else if (!current.empty() && std::regex_search(line, m, expr)) {
      if (m[2] == "|") {
        block_indent = m[1].length();
      } else {
        out[current] = m[2];
      }
    }
  }
  return out;
}

// What is alerted is plotted: the on-call engineer paged by an alert finds its metric on a dashboard.
TEST_F(DashboardsTest, EveryMetricAnAlertUsesIsOnADashboard) {
  std::set<std::string> plotted;
  for (const Dashboard& d : *dashboards_) {
    for (const Json* panel : Panels(d.json)) {
      for (const Json& t : (*panel)["targets"].items()) {
        for (const Selector& sel : ScanPromQL(t["expr"].str()).selectors) plotted.insert(sel.metric);
      }
    }
  }
  const auto alerts = AlertExpressions();
  ASSERT_GE(alerts.size(), 40u);
  ASSERT_NE(alerts.at("PostgreSQLConnectionsNearLimit").find("pg_connections_reserved_superuser"), std::string::npos);
  std::set<std::string> missing;
  for (const auto& [alert, expr] : alerts) {
    for (const Selector& sel : ScanPromQL(expr).selectors) {
      if (!plotted.count(sel.metric)) missing.insert(alert + " uses " + sel.metric + ", on no dashboard");
    }
  }
  EXPECT_TRUE(missing.empty()) << Join({missing.begin(), missing.end()});
}

TEST_F(DashboardsTest, ProvisioningPointsGrafanaAtTheDashboardsAndAPrometheusDatasource) {
  const std::string provider = ReadFile(kSourceDir + "/packaging/grafana/provisioning/dashboards/pgpulse.yaml");
  EXPECT_NE(provider.find("apiVersion: 1"), std::string::npos) << provider;
  EXPECT_NE(provider.find("type: file"), std::string::npos) << provider;
  EXPECT_NE(provider.find("path:"), std::string::npos) << provider;
  const std::string datasource = ReadFile(kSourceDir + "/packaging/grafana/provisioning/datasources/pgpulse.yaml");
  EXPECT_NE(datasource.find("apiVersion: 1"), std::string::npos) << datasource;
  EXPECT_NE(datasource.find("type: prometheus"), std::string::npos) << datasource;
  // Nothing in the dashboards may depend on the provisioned datasource's uid or name.
  const std::regex uid(R"(\buid:\s*(\S+))");
  std::smatch m;
  if (std::regex_search(datasource, m, uid)) {
    for (const Dashboard& d : *dashboards_) {
      const std::string text = ReadFile(kSourceDir + "/dashboards/" + d.file);
      EXPECT_EQ(text.find(m[1].str()), std::string::npos) << d.file << " names the provisioned uid " << m[1];
    }
  }
}

}  // namespace
}  // namespace pgpulse::testing
