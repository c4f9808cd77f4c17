#include "agent/exporter_queries.h"

#include <openssl/sha.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "collectors/definition.h"
#include "collectors/yaml_reader.h"

namespace pgpulse::agent {
namespace {

using collectors::YamlReader;

// The address postgres_exporter puts in its `server` label, as the profile's own definitions write it.
constexpr const char* kServerExpression =
    "COALESCE(host(inet_server_addr()), 'localhost') || ':' || current_setting('port')";

std::string Hex(const unsigned char* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 15]);
  }
  return out;
}

std::string Sha256(const std::string& text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return Hex(digest, sizeof digest);
}

// A collector name from a namespace: lower case, anything else than [a-z0-9_] as '_'.
std::string CollectorName(const std::string& ns) {
  std::string out = "pe_queries__";
  for (char c : ns) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(std::isalnum(u) ? static_cast<char>(std::tolower(u)) : '_');
  }
  return out;
}

std::string QuotedIdentifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

std::string QuotedLiteral(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

std::string FormatNumber(double v) {
  std::ostringstream ss;
  ss.precision(17);
  ss << v;
  return ss.str();
}

// A version "X[.Y[.Z]]" as server_version_num (10 and later: X*10000 + Y; before: X*10000 + Y*100 + Z).
std::optional<int> VersionNum(const std::string& text) {
  int parts[3] = {0, 0, 0};
  size_t n = 0, i = 0;
  while (i < text.size() && n < 3) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return std::nullopt;
    long v = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      v = v * 10 + (text[i++] - '0');
      if (v > 9999) return std::nullopt;
    }
    parts[n++] = static_cast<int>(v);
    if (i < text.size()) {
      if (text[i] != '.') return std::nullopt;
      ++i;
      if (i == text.size()) return std::nullopt;
    }
  }
  if (i != text.size() || n == 0) return std::nullopt;
  return parts[0] >= 10 ? parts[0] * 10000 + parts[1] : parts[0] * 10000 + parts[1] * 100 + parts[2];
}

struct Metric {
  std::string column;
  std::string usage;
  std::string description;
  std::vector<std::pair<std::string, double>> mapping;
};

// The namespace's `metrics` list: one single-key map per column.
std::vector<Metric> ReadMetrics(YamlReader& r, const YAML::Node& list, const std::string& ctx) {
  std::vector<Metric> out;
  if (!list.IsSequence()) {
    r.Error(list, ctx + ".metrics must be a list of {COLUMN: {usage, description}}");
    return out;
  }
  std::set<std::string> seen;
  for (const YAML::Node& item : list) {
    if (!item.IsMap() || item.size() != 1) {
      r.Error(item, ctx + ".metrics: each entry must be a map of one column name to {usage, description}");
      continue;
    }
    Metric m;
    auto it = item.begin();
    if (auto name = r.String(it->first, ctx + " column name")) m.column = *name;
    const std::string cctx = ctx + " column '" + m.column + "'";
    if (!seen.insert(m.column).second) r.Error(it->first, cctx + " is listed twice");
    const YAML::Node spec = it->second;
    if (!r.Map(spec, cctx, {"usage", "description", "mapping"})) continue;
    if (!spec["usage"]) r.Error(spec, cctx + ": missing required key 'usage'");
    else if (auto u = r.String(spec["usage"], cctx + ".usage")) m.usage = *u;
    if (spec["description"]) {
      if (auto d = r.String(spec["description"], cctx + ".description")) m.description = *d;
    }
    static const std::set<std::string> known{"LABEL", "GAUGE", "COUNTER", "MAPPEDMETRIC", "DISCARD", "HISTOGRAM"};
    if (m.usage == "DURATION") {
      r.Error(spec["usage"], cctx +
                                 ": usage DURATION (a Go duration text) cannot be translated: return "
                                 "milliseconds as a number and use GAUGE under a name ending _milliseconds");
    } else if (!m.usage.empty() && !known.count(m.usage)) {
      r.Error(spec["usage"], cctx + ": usage must be LABEL, GAUGE, COUNTER, MAPPEDMETRIC, HISTOGRAM or DISCARD, got '" +
                                 m.usage + "'");
    }
    if (m.usage == "MAPPEDMETRIC") {
      const YAML::Node mapping = spec["mapping"];
      if (!mapping || !mapping.IsMap() || mapping.size() == 0) {
        r.Error(mapping ? mapping : spec, cctx + ": MAPPEDMETRIC needs a 'mapping' of text values to numbers");
      } else {
        for (auto e = mapping.begin(); e != mapping.end(); ++e) {
          auto key = r.String(e->first, cctx + ".mapping key");
          auto value = r.Number(e->second, cctx + ".mapping value");
          if (key && value) m.mapping.emplace_back(*key, *value);
        }
      }
    } else if (spec["mapping"]) {
      r.Error(spec["mapping"], cctx + ": mapping belongs to usage MAPPEDMETRIC only");
    }
    out.push_back(std::move(m));
  }
  return out;
}

// The user's query wrapped so that each row also carries `server`, and each value column a copy
// (COLUMN__value) that is 'NaN' where the column is NULL, as postgres_exporter serves NULL; a
// MAPPEDMETRIC's copy is its text mapped to a number.
std::string WrappedSql(std::string sql, const std::vector<Metric>& metrics, bool add_server) {
  while (!sql.empty() && (std::isspace(static_cast<unsigned char>(sql.back())) || sql.back() == ';')) sql.pop_back();
  std::string select = "SELECT q.*";
  if (add_server) select += std::string(", ") + kServerExpression + " AS server";
  for (const Metric& m : metrics) {
    const std::string col = "q." + QuotedIdentifier(m.column);
    if (m.usage == "MAPPEDMETRIC") {
      std::string c = "CASE " + col + "::text";
      for (const auto& [text, value] : m.mapping) c += " WHEN " + QuotedLiteral(text) + " THEN " + FormatNumber(value);
      select += ", " + c + " END::float8 AS " + QuotedIdentifier(m.column + "__value");
    } else if (m.usage == "GAUGE" || m.usage == "COUNTER") {
      select += ", CASE WHEN " + col + " IS NULL THEN 'NaN' ELSE " + col + "::text END AS " +
                QuotedIdentifier(m.column + "__value");
    }
  }
  return select + "\nFROM (\n" + sql + "\n) AS q";
}

// One namespace as a pgpulse definition; errors go to `r`.
std::optional<YAML::Node> TranslateNamespace(YamlReader& r, const std::string& ns, const YAML::Node& node) {
  const std::string ctx = "query '" + ns + "'";
  if (!r.Map(node, ctx, {"query", "master", "cache_seconds", "runonserver", "metrics"})) return std::nullopt;
  std::string sql;
  bool master = false;
  int64_t cache_seconds = 0;
  std::vector<std::pair<int, int>> ranges;
  if (!node["query"]) r.Error(node, ctx + ": missing required key 'query'");
  else if (auto q = r.String(node["query"], ctx + ".query")) sql = *q;
  if (node["master"]) master = r.Bool(node["master"], ctx + ".master").value_or(false);
  if (node["cache_seconds"]) {
    auto v = r.Integer(node["cache_seconds"], ctx + ".cache_seconds");
    if (v && *v < 0) r.Error(node["cache_seconds"], ctx + ".cache_seconds: must not be negative");
    else if (v) cache_seconds = *v;
  }
  if (node["runonserver"]) {
    if (auto text = r.String(node["runonserver"], ctx + ".runonserver")) {
      std::string error;
      if (auto parsed = ParseVersionRange(*text, error)) ranges = *parsed;
      else r.Error(node["runonserver"], ctx + ".runonserver: " + error);
    }
  }
  std::vector<Metric> metrics;
  if (!node["metrics"]) r.Error(node, ctx + ": missing required key 'metrics'");
  else metrics = ReadMetrics(r, node["metrics"], ctx);

  YAML::Node def;
  def["name"] = CollectorName(ns);
  def["help"] = "postgres_exporter custom query '" + ns + "' (" + r.origin() + ")";
  // Not master: with discovery postgres_exporter runs it in every database. pgpulse does so for a
  // query that says which database a row is about (a LABEL datname, current_database() by idiom),
  // which the agent's datname label then carries; any other would give each database the same
  // series (postgres_exporter then fails the scrape), so it runs once.
  bool per_database = false;
  for (const Metric& m : metrics) per_database = per_database || (m.usage == "LABEL" && m.column == "datname");
  def["scope"] = !master && per_database ? "database" : "server";
  if (cache_seconds > 0) def["ttl"] = std::to_string(cache_seconds) + "s";
  // postgres_exporter gives a query the whole scrape and any number of rows.
  def["timeout"] = "30s";
  def["max_series"] = 1000000;
  def["ignore_other_columns"] = true;
  bool has_server = false;
  YAML::Node columns;
  for (const Metric& m : metrics) {
    const std::string metric = ns + "_" + m.column;
    const std::string help = m.description.empty() ? metric + " (" + ns + " in " + r.origin() + ")" : m.description;
    if (m.usage == "LABEL") {
      has_server = has_server || m.column == "server";
      if (!collectors::ValidLabelName(m.column)) {
        r.Error(node, ctx + " column '" + m.column + "': not a valid label name");
      } else if (m.column == "datname" && !master && per_database) {
        columns[m.column] = "ignore";  // the agent's datname: the database the query ran in
      } else if (m.column == "target") {
        r.Error(node, ctx + " column 'target': the label 'target' is set by the agent; rename the column");
      } else {
        columns[m.column] = "label";
      }
      continue;
    }
    if (m.usage == "DISCARD" || m.usage.empty()) {
      columns[m.column] = "ignore";
      continue;
    }
    if (!collectors::ValidMetricName(metric)) {
      r.Error(node, ctx + " column '" + m.column + "': '" + metric + "' is not a valid metric name");
      continue;
    }
    YAML::Node spec;
    spec[m.usage == "COUNTER" ? "counter" : m.usage == "HISTOGRAM" ? "histogram" : "gauge"] = metric;
    spec["help"] = help;
    if (m.usage == "HISTOGRAM") {
      columns[m.column] = spec;
    } else {
      columns[m.column] = "ignore";
      columns[m.column + "__value"] = spec;
    }
  }
  if (!has_server) columns["server"] = "label";
  def["columns"] = columns;
  const std::string wrapped = WrappedSql(sql, metrics, !has_server);
  if (ranges.empty()) {
    def["sql"] = wrapped;
  } else {
    for (const auto& [min, max] : ranges) {
      YAML::Node v;
      if (min > 0) v["min_version"] = min;
      if (max < 1'000'000) v["max_version"] = max;
      v["sql"] = wrapped;
      def["variants"].push_back(v);
    }
  }
  return def;
}

}  // namespace

std::optional<std::vector<std::pair<int, int>>> ParseVersionRange(const std::string& range, std::string& error) {
  std::vector<std::pair<int, int>> out;
  std::string rest = range;
  for (;;) {
    size_t bar = rest.find("||");
    std::string alternative = rest.substr(0, bar);
    int min = 0, max = 1'000'000;
    std::istringstream words(alternative);
    std::string word;
    bool any = false;
    while (words >> word) {
      any = true;
      size_t op_len = 0;
      while (op_len < word.size() && std::strchr("<>=!", word[op_len])) ++op_len;
      const std::string op = word.substr(0, op_len), version = word.substr(op_len);
      std::optional<int> v = VersionNum(version);
      if (!v) {
        error = "'" + word + "' is not a comparison with a version such as >=10.0.0";
        return std::nullopt;
      }
      if (op == ">=") min = std::max(min, *v);
      else if (op == ">") min = std::max(min, *v + 1);
      else if (op == "<") max = std::min(max, *v);
      else if (op == "<=") max = std::min(max, *v + 1);
      else if (op.empty() || op == "=" || op == "==") min = std::max(min, *v), max = std::min(max, *v + 1);
      else {
        error = "operator '" + op + "' in '" + word + "' is not supported (use >=, >, <=, <, = and ||)";
        return std::nullopt;
      }
    }
    if (!any) {
      error = "empty range in '" + range + "'";
      return std::nullopt;
    }
    if (min >= max) {
      error = "'" + alternative + "' matches no version";
      return std::nullopt;
    }
    out.emplace_back(min, max);
    if (bar == std::string::npos) break;
    rest = rest.substr(bar + 2);
  }
  return out;
}

std::optional<TranslatedQueries> TranslateQueries(const std::string& text, const std::string& origin,
                                                  std::vector<std::string>& errors) {
  const size_t before = errors.size();
  YamlReader r(origin, errors);
  std::optional<YAML::Node> root = r.Load(text);
  if (!root) return std::nullopt;
  TranslatedQueries out;
  out.path = origin;
  out.sha256 = Sha256(text);
  YAML::Node collectors_list;
  if (!root->IsNull()) {
    if (!root->IsMap()) {
      r.Error(*root, "expected a map of query names to {query, metrics, ...}");
      return std::nullopt;
    }
    std::map<std::string, std::string> names;  // collector name -> where its namespace is
    for (auto it = root->begin(); it != root->end(); ++it) {
      auto ns = r.String(it->first, "query name");
      if (!ns) continue;
      if (!collectors::ValidMetricName(*ns)) {
        r.Error(it->first, "query name '" + *ns + "' is not a valid metric name prefix");
        continue;
      }
      const std::string name = CollectorName(*ns);
      if (auto [seen, fresh] = names.emplace(name, r.Where(it->first)); !fresh) {
        r.Error(it->first,
                "query '" + *ns + "' is given twice (or differs only in case from one at " + seen->second + ")");
        continue;
      }
      if (auto def = TranslateNamespace(r, *ns, it->second)) collectors_list.push_back(*def);
      out.origins[name] = r.Where(it->first);
    }
  }
  if (errors.size() != before) return std::nullopt;
  YAML::Node doc;
  doc["collectors"] = collectors_list.IsNull() ? YAML::Node(YAML::NodeType::Sequence) : collectors_list;
  YAML::Emitter emitter;
  emitter << doc;
  out.source = collectors::Source{origin + " (translated)", emitter.c_str(), true};
  return out;
}

std::optional<TranslatedQueries> TranslateQueriesFile(const std::string& path, std::vector<std::string>& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.push_back(path + ": cannot read postgres_exporter queries file: " + std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return TranslateQueries(ss.str(), path, errors);
}

}  // namespace pgpulse::agent
