#include "collectors/mapping.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <functional>

namespace pgpulse::collectors {

std::optional<double> ParseSampleValue(std::string_view text) {
  if (text == "t") return 1.0;
  if (text == "f") return 0.0;
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (text == "Infinity") return std::numeric_limits<double>::infinity();
  if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (p != text.data() + text.size() || text.empty()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    // from_chars reports huge numerics (e.g. 1e400) as out of range; strtod saturates.
    return std::strtod(std::string(text).c_str(), nullptr);
  }
  if (ec != std::errc()) return std::nullopt;
  return v;
}

namespace {

// Key/value rows to one row whose columns are the described keys; cells keep
// pointing into the caller's storage. Rows with other keys are dropped.
bool PivotRows(const Definition& def, const TableView& in, TableView& out, std::string& error) {
  size_t key = in.columns.size(), value = in.columns.size();
  for (size_t c = 0; c < in.columns.size(); ++c) {
    if (in.columns[c] == def.pivot->key_column) key = c;
    if (in.columns[c] == def.pivot->value_column) value = c;
  }
  if (key == in.columns.size() || value == in.columns.size()) {
    error = "pivot: the query did not return the key column '" + def.pivot->key_column + "' and the value column '" +
            def.pivot->value_column + "'";
    return false;
  }
  out.rows = 1;
  for (size_t r = 0; r < in.rows; ++r) {
    const Cell& k = in.at(r, key);
    if (k.null) continue;
    std::string name(k.view());
    if (!def.FindColumn(name)) continue;
    if (std::find(out.columns.begin(), out.columns.end(), name) != out.columns.end()) {
      error = "pivot: key '" + name + "' appears in more than one row";
      return false;
    }
    out.columns.push_back(std::move(name));
    out.cells.push_back(in.at(r, value));
  }
  return true;
}

// One family per row, named by the row's NameSuffix cell after the column's prefix (postgres_exporter's
// pg_settings_<name>); the one metric column gives the value, label columns and extra_labels the labels.
MappedResult MapNamedRows(const Definition& def, const TableView& table, const std::vector<const Column*>& spec,
                          const std::vector<std::pair<std::string, std::string>>& extra_labels) {
  MappedResult out;
  size_t name_col = 0, value_col = 0;
  for (size_t c = 0; c < spec.size(); ++c) {
    if (spec[c]->usage == ColumnUsage::NameSuffix) name_col = c;
    if (IsMetricUsage(spec[c]->usage)) value_col = c;
  }
  std::vector<std::string> seen;
  for (size_t r = 0; r < table.rows; ++r) {
    const Cell& name = table.at(r, name_col);
    const Cell& value = table.at(r, value_col);
    if (name.null || value.null) continue;
    Family f;
    f.name = spec[name_col]->metric + std::string(name.view());
    if (!ValidMetricName(f.name)) {
      out.error = "column '" + table.columns[name_col] + "' makes metric name '" + f.name + "', which is not valid";
      break;
    }
    if (std::find(seen.begin(), seen.end(), f.name) != seen.end()) {
      out.dropped_duplicates++;
      continue;
    }
    if (r >= def.max_rows || out.series >= def.max_series) {
      out.dropped_limit++;
      continue;
    }
    auto v = ParseSampleValue(value.view());
    if (!v) {
      out.error = "column '" + table.columns[value_col] + "' has value '" + std::string(value.view()) + "' in row " +
                  std::to_string(r + 1) + ", which is not a number";
      break;
    }
    std::vector<std::pair<std::string, std::string>> labels = extra_labels;
    for (size_t c = 0; c < spec.size(); ++c) {
      if (spec[c]->usage == ColumnUsage::Label)
        labels.emplace_back(spec[c]->label, table.at(r, c).null ? "" : std::string(table.at(r, c).view()));
    }
    f.help = spec[value_col]->help;
    f.kind = spec[value_col]->usage == ColumnUsage::Counter   ? MetricKind::Counter
             : spec[value_col]->usage == ColumnUsage::Untyped ? MetricKind::Untyped
                                                              : MetricKind::Gauge;
    f.Add(RenderLabels(labels), *v * spec[value_col]->scale);
    seen.push_back(f.name);
    out.families.push_back(std::move(f));
    out.series++;
  }
  if (!out.error.empty()) {
    out.families.clear();
    out.series = 0;
  }
  return out;
}

}  // namespace

MappedResult MapRows(const Definition& def, const TableView& given,
                     const std::vector<std::pair<std::string, std::string>>& extra_labels) {
  MappedResult out;
  TableView pivoted;
  if (def.pivot && !PivotRows(def, given, pivoted, out.error)) return out;
  const TableView& table = def.pivot ? pivoted : given;
  static const Column kIgnored{};
  // Resolve result columns against the definition, both ways.
  std::vector<const Column*> spec(table.columns.size(), nullptr);
  for (size_t c = 0; c < table.columns.size(); ++c) {
    spec[c] = def.FindColumn(table.columns[c]);
    if (!spec[c] && def.ignore_other_columns) spec[c] = &kIgnored;
    if (!spec[c]) {
      out.error = "query returned column '" + table.columns[c] + "' which 'columns' does not describe";
      return out;
    }
  }
  for (const Column& col : def.columns) {
    bool present = false;
    for (const std::string& name : table.columns) present = present || name == col.name;
    if (!present) {
      out.error = def.pivot ? "pivot: no row has " + def.pivot->key_column + " '" + col.name + "'"
                            : "column '" + col.name + "' is described but the query did not return it";
      return out;
    }
  }
  if (def.NameSuffixColumn()) return MapNamedRows(def, table, spec, extra_labels);
  std::vector<size_t> label_cols, metric_cols;
  std::optional<size_t> before_limit_col;
  for (size_t c = 0; c < spec.size(); ++c) {
    if (spec[c]->usage == ColumnUsage::RowsBeforeLimit) before_limit_col = c;
    if (spec[c]->usage == ColumnUsage::Label) label_cols.push_back(c);
    if (IsMetricUsage(spec[c]->usage)) {
      metric_cols.push_back(c);
      Family f;
      f.name = spec[c]->metric;
      f.help = spec[c]->help;
      f.kind = spec[c]->usage == ColumnUsage::Counter   ? MetricKind::Counter
               : spec[c]->usage == ColumnUsage::Untyped ? MetricKind::Untyped
                                                        : MetricKind::Gauge;
      out.families.push_back(std::move(f));
    }
  }
  // Per metric column, the columns whose values add to it.
  std::vector<std::vector<size_t>> addends(metric_cols.size());
  for (size_t c = 0; c < spec.size(); ++c) {
    if (spec[c]->usage != ColumnUsage::AddTo) continue;
    for (size_t i = 0; i < metric_cols.size(); ++i) {
      if (table.columns[metric_cols[i]] == spec[c]->add_to) addends[i].push_back(c);
    }
  }
  if (def.info) {
    Family f;
    f.name = def.info->metric;
    f.help = def.info->help;
    f.kind = MetricKind::Gauge;
    out.families.push_back(std::move(f));
  }

  // Pass 1: every row's label suffix into one arena, so that pass 2 can
  // deduplicate through string_views that stay valid.
  std::string prefix;
  bool first = true;
  for (const auto& [k, v] : extra_labels) {
    AppendLabel(prefix, k, v, first);
    first = false;
  }
  const bool any_labels = !extra_labels.empty() || !label_cols.empty();
  std::string arena;
  std::vector<uint32_t> row_end;
  row_end.reserve(table.rows);
  arena.reserve(table.rows * (prefix.size() + 16 * label_cols.size() + 2));
  for (size_t r = 0; r < table.rows; ++r) {
    if (any_labels) {
      arena.push_back('{');
      arena.append(prefix);
      bool f = extra_labels.empty();
      for (size_t c : label_cols) {
        const Cell& cell = table.at(r, c);
        AppendLabel(arena, spec[c]->label, cell.null ? std::string_view() : cell.view(), f);
        f = false;
      }
      arena.push_back('}');
    }
    row_end.push_back(static_cast<uint32_t>(arena.size()));
  }

  // Pass 2: values, duplicates, limit.
  for (Family& f : out.families) {
    f.suffixes.reserve(arena.size());
    f.suffix_end.reserve(table.rows);
    f.values.reserve(table.rows);
  }
  auto suffix_of = [&](size_t r) {
    size_t begin = r == 0 ? 0 : row_end[r - 1];
    return std::string_view(arena.data() + begin, row_end[r] - begin);
  };
  // Open addressing over row numbers: no allocation per row, unlike a node-based set.
  size_t capacity = 16;
  while (capacity < table.rows * 2) capacity <<= 1;
  std::vector<uint32_t> slots(capacity, 0);  // row + 1; 0 = empty
  const std::hash<std::string_view> hasher;
  std::vector<size_t> hashes(table.rows);
  for (size_t r = 0; r < table.rows; ++r) hashes[r] = hasher(suffix_of(r)) & (capacity - 1);
  constexpr size_t kPrefetchAhead = 16;  // slot lookups are cache misses; start them early
  auto first_time = [&](size_t r, std::string_view suffix) {
    if (r + kPrefetchAhead < table.rows) __builtin_prefetch(&slots[hashes[r + kPrefetchAhead]]);
    for (size_t i = hashes[r];; i = (i + 1) & (capacity - 1)) {
      if (slots[i] == 0) {
        slots[i] = static_cast<uint32_t>(r + 1);
        return true;
      }
      if (suffix_of(slots[i] - 1) == suffix) return false;
    }
  };
  for (size_t r = 0; r < table.rows; ++r) {
    std::string_view suffix = suffix_of(r);
    size_t present = def.info ? 1 : 0;
    for (size_t c : metric_cols) present += table.at(r, c).null ? 0 : 1;
    if (r >= def.max_rows) {
      out.dropped_limit += present;
      continue;
    }
    if (!first_time(r, suffix)) {
      out.dropped_duplicates += present;
      continue;
    }
    if (out.series + present > def.max_series) {
      out.dropped_limit += present;
      continue;
    }
    auto value_of = [&](size_t c) -> std::optional<double> {
      const Cell& cell = table.at(r, c);
      auto v = ParseSampleValue(cell.view());
      if (!v) {
        out.error = "column '" + table.columns[c] + "' has value '" + std::string(cell.view()) + "' in row " +
                    std::to_string(r + 1) + ", which is not a number";
        return std::nullopt;
      }
      return *v * spec[c]->scale;
    };
    for (size_t i = 0; i < metric_cols.size(); ++i) {
      if (table.at(r, metric_cols[i]).null) continue;
      auto v = value_of(metric_cols[i]);
      for (size_t a : addends[i]) {
        if (!v || table.at(r, a).null) continue;
        auto more = value_of(a);
        v = more ? std::optional<double>(*v + *more) : std::nullopt;
      }
      if (!v) {
        out.families.clear();
        out.series = 0;
        return out;
      }
      out.families[i].Add(suffix, *v);
    }
    if (def.info) out.families.back().Add(suffix, 1);
    out.series += present;
  }
  if (before_limit_col && table.rows > 0) {
    const Cell& cell = table.at(0, *before_limit_col);
    auto total = cell.null ? std::nullopt : ParseSampleValue(cell.view());
    if (!total || *total < 0 || *total != std::floor(*total)) {
      out.error = "column '" + table.columns[*before_limit_col] + "' (rows_before_limit) has value '" +
                  std::string(cell.null ? "NULL" : cell.view()) + "', which is not a row count";
      out.families.clear();
      out.series = 0;
      return out;
    }
    // Rows the query left out never reached us: count each as one series per metric column.
    if (*total > static_cast<double>(table.rows))
      out.dropped_limit += static_cast<size_t>(*total - static_cast<double>(table.rows)) * metric_cols.size();
  }
  return out;
}

}  // namespace pgpulse::collectors
