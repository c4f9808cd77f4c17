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

MetricKind KindOf(ColumnUsage usage) {
  return usage == ColumnUsage::Counter   ? MetricKind::Counter
         : usage == ColumnUsage::Untyped ? MetricKind::Untyped
                                         : MetricKind::Gauge;
}

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
    f.kind = KindOf(spec[value_col]->usage);
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

// Which result column plays which part: resolved once per run.
struct Layout {
  std::vector<const Column*> spec;  // per result column
  std::vector<size_t> label_cols, metric_cols;
  std::vector<std::vector<size_t>> addends;  // per metric column, the columns whose values add to it
  std::optional<size_t> before_limit_col;
};

// Resolves result columns against the definition, both ways; "" or the error.
std::string ResolveColumns(const Definition& def, const TableView& table, Layout& layout) {
  static const Column kIgnored{};
  layout.spec.assign(table.columns.size(), nullptr);
  for (size_t c = 0; c < table.columns.size(); ++c) {
    layout.spec[c] = def.FindColumn(table.columns[c]);
    if (!layout.spec[c] && def.ignore_other_columns) layout.spec[c] = &kIgnored;
    if (!layout.spec[c]) return "query returned column '" + table.columns[c] + "' which 'columns' does not describe";
  }
  for (const Column& col : def.columns) {
    if (std::find(table.columns.begin(), table.columns.end(), col.name) != table.columns.end()) continue;
    return def.pivot ? "pivot: no row has " + def.pivot->key_column + " '" + col.name + "'"
                     : "column '" + col.name + "' is described but the query did not return it";
  }
  return "";
}

// Sorts the columns into labels and metrics, and makes one family per metric (and the info metric).
void PlanFamilies(const Definition& def, const TableView& table, Layout& layout, std::vector<Family>& families) {
  const std::vector<const Column*>& spec = layout.spec;
  for (size_t c = 0; c < spec.size(); ++c) {
    if (spec[c]->usage == ColumnUsage::RowsBeforeLimit) layout.before_limit_col = c;
    if (spec[c]->usage == ColumnUsage::Label) layout.label_cols.push_back(c);
    if (IsMetricUsage(spec[c]->usage)) {
      layout.metric_cols.push_back(c);
      Family f;
      f.name = spec[c]->metric;
      f.help = spec[c]->help;
      f.kind = KindOf(spec[c]->usage);
      families.push_back(std::move(f));
    }
  }
  layout.addends.assign(layout.metric_cols.size(), {});
  for (size_t c = 0; c < spec.size(); ++c) {
    if (spec[c]->usage != ColumnUsage::AddTo) continue;
    for (size_t i = 0; i < layout.metric_cols.size(); ++i) {
      if (table.columns[layout.metric_cols[i]] == spec[c]->add_to) layout.addends[i].push_back(c);
    }
  }
  if (def.info) {
    Family f;
    f.name = def.info->metric;
    f.help = def.info->help;
    f.kind = MetricKind::Gauge;
    families.push_back(std::move(f));
  }
}

// Every row's label suffix ("{a="1",b="2"}") in one arena, so that rows can be
// deduplicated through string_views that stay valid.
class LabelSuffixes {
 public:
  LabelSuffixes(const TableView& table, const Layout& layout,
                const std::vector<std::pair<std::string, std::string>>& extra_labels) {
    std::string prefix;
    bool first = true;
    for (const auto& [k, v] : extra_labels) {
      AppendLabel(prefix, k, v, first);
      first = false;
    }
    const bool any_labels = !extra_labels.empty() || !layout.label_cols.empty();
    row_end_.reserve(table.rows);
    arena_.reserve(table.rows * (prefix.size() + 16 * layout.label_cols.size() + 2));
    for (size_t r = 0; r < table.rows; ++r) {
      if (any_labels) {
        arena_.push_back('{');
        arena_.append(prefix);
        bool f = extra_labels.empty();
        for (size_t c : layout.label_cols) {
          const Cell& cell = table.at(r, c);
          AppendLabel(arena_, layout.spec[c]->label, cell.null ? std::string_view() : cell.view(), f);
          f = false;
        }
        arena_.push_back('}');
      }
      row_end_.push_back(static_cast<uint32_t>(arena_.size()));
    }
  }
  std::string_view of(size_t r) const {
    size_t begin = r == 0 ? 0 : row_end_[r - 1];
    return std::string_view(arena_.data() + begin, row_end_[r] - begin);
  }
  size_t size() const { return arena_.size(); }

 private:
  std::string arena_;
  std::vector<uint32_t> row_end_;
};

// Open addressing over row numbers: no allocation per row, unlike a node-based set.
class FirstSeen {
 public:
  explicit FirstSeen(const LabelSuffixes& suffixes, size_t rows) : suffixes_(suffixes), rows_(rows) {
    while (capacity_ < rows * 2) capacity_ <<= 1;
    slots_.assign(capacity_, 0);
    const std::hash<std::string_view> hasher;
    hashes_.resize(rows);
    for (size_t r = 0; r < rows; ++r) hashes_[r] = hasher(suffixes.of(r)) & (capacity_ - 1);
  }
  // Whether no earlier row had row `r`'s labels.
  bool operator()(size_t r) {
    constexpr size_t kPrefetchAhead = 16;  // slot lookups are cache misses; start them early
    if (r + kPrefetchAhead < rows_) __builtin_prefetch(&slots_[hashes_[r + kPrefetchAhead]]);
    const std::string_view suffix = suffixes_.of(r);
    for (size_t i = hashes_[r];; i = (i + 1) & (capacity_ - 1)) {
      if (slots_[i] == 0) {
        slots_[i] = static_cast<uint32_t>(r + 1);
        return true;
      }
      if (suffixes_.of(slots_[i] - 1) == suffix) return false;
    }
  }

 private:
  const LabelSuffixes& suffixes_;
  const size_t rows_;
  size_t capacity_ = 16;
  std::vector<uint32_t> slots_;  // row + 1; 0 = empty
  std::vector<size_t> hashes_;
};

// Adds row `r`'s samples to the families; false (with out.error) on a value that is not a number.
bool AddRow(const Definition& def, const TableView& table, const Layout& layout, size_t r, std::string_view suffix,
            MappedResult& out) {
  auto value_of = [&](size_t c) -> std::optional<double> {
    const Cell& cell = table.at(r, c);
    auto v = ParseSampleValue(cell.view());
    if (!v) {
      out.error = "column '" + table.columns[c] + "' has value '" + std::string(cell.view()) + "' in row " +
                  std::to_string(r + 1) + ", which is not a number";
      return std::nullopt;
    }
    return *v * layout.spec[c]->scale;
  };
  for (size_t i = 0; i < layout.metric_cols.size(); ++i) {
    if (table.at(r, layout.metric_cols[i]).null) continue;
    auto v = value_of(layout.metric_cols[i]);
    for (size_t a : layout.addends[i]) {
      if (!v || table.at(r, a).null) continue;
      auto more = value_of(a);
      v = more ? std::optional<double>(*v + *more) : std::nullopt;
    }
    if (!v) return false;
    out.families[i].Add(suffix, *v);
  }
  if (def.info) out.families.back().Add(suffix, 1);
  return true;
}

// Values, duplicates, limits: every row into the families. False on an unusable value.
bool AddRows(const Definition& def, const TableView& table, const Layout& layout, const LabelSuffixes& suffixes,
             MappedResult& out) {
  for (Family& f : out.families) {
    f.suffixes.reserve(suffixes.size());
    f.suffix_end.reserve(table.rows);
    f.values.reserve(table.rows);
  }
  FirstSeen first_time(suffixes, table.rows);
  for (size_t r = 0; r < table.rows; ++r) {
    size_t present = def.info ? 1 : 0;
    for (size_t c : layout.metric_cols) present += table.at(r, c).null ? 0 : 1;
    if (r >= def.max_rows) {
      out.dropped_limit += present;
      continue;
    }
    if (!first_time(r)) {
      out.dropped_duplicates += present;
      continue;
    }
    if (out.series + present > def.max_series) {
      out.dropped_limit += present;
      continue;
    }
    if (!AddRow(def, table, layout, r, suffixes.of(r), out)) return false;
    out.series += present;
  }
  return true;
}

// Counts the rows a self-limiting query left out (its rows_before_limit column) as dropped.
bool CountRowsBeforeLimit(const TableView& table, const Layout& layout, MappedResult& out) {
  if (!layout.before_limit_col || table.rows == 0) return true;
  const Cell& cell = table.at(0, *layout.before_limit_col);
  auto total = cell.null ? std::nullopt : ParseSampleValue(cell.view());
  if (!total || *total < 0 || *total != std::floor(*total)) {
    out.error = "column '" + table.columns[*layout.before_limit_col] + "' (rows_before_limit) has value '" +
                std::string(cell.null ? "NULL" : cell.view()) + "', which is not a row count";
    return false;
  }
  // Rows the query left out never reached us: count each as one series per metric column.
  if (*total > static_cast<double>(table.rows))
    out.dropped_limit += static_cast<size_t>(*total - static_cast<double>(table.rows)) * layout.metric_cols.size();
  return true;
}

}  // namespace

MappedResult MapRows(const Definition& def, const TableView& given,
                     const std::vector<std::pair<std::string, std::string>>& extra_labels) {
  MappedResult out;
  TableView pivoted;
  if (def.pivot && !PivotRows(def, given, pivoted, out.error)) return out;
  const TableView& table = def.pivot ? pivoted : given;
  Layout layout;
  out.error = ResolveColumns(def, table, layout);
  if (!out.error.empty()) return out;
  if (def.NameSuffixColumn()) return MapNamedRows(def, table, layout.spec, extra_labels);
  PlanFamilies(def, table, layout, out.families);
  const LabelSuffixes suffixes(table, layout, extra_labels);
  if (!AddRows(def, table, layout, suffixes, out) || !CountRowsBeforeLimit(table, layout, out)) {
    out.families.clear();
    out.series = 0;
  }
  return out;
}

}  // namespace pgpulse::collectors
