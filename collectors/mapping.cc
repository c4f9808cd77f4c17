#include "collectors/mapping.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <optional>

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

std::optional<double> ParseTimestampSeconds(std::string_view text) {
  // YYYY-MM-DD HH:MM:SS[.fraction][+HH[:MM]|-HH[:MM]], as PostgreSQL writes timestamptz in ISO style.
  auto digits = [&](size_t at, size_t n) -> std::optional<int> {
    if (at + n > text.size()) return std::nullopt;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' || text[10] != ' ' || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
  auto hour = digits(11, 2), minute = digits(14, 2), second = digits(17, 2);
  if (!year || !month || !day || !hour || !minute || !second) return std::nullopt;
  size_t i = 19;
  double fraction = 0;
  if (i < text.size() && text[i] == '.') {
    double scale = 0.1;
    for (++i; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, scale /= 10)
      fraction += (text[i] - '0') * scale;
  }
  int offset = 0;
  if (i < text.size()) {
    if (text[i] != '+' && text[i] != '-') return std::nullopt;
    const int sign = text[i] == '-' ? -1 : 1;
    auto oh = digits(i + 1, 2);
    if (!oh) return std::nullopt;
    int om = 0;
    size_t end = i + 3;
    if (end < text.size() && text[end] == ':') {
      auto m = digits(end + 1, 2);
      if (!m) return std::nullopt;
      om = *m;
      end += 3;
    }
    if (end != text.size()) return std::nullopt;
    offset = sign * (*oh * 3600 + om * 60);
  }
  // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's days_from_civil.
  const int y = *year - (*month <= 2 ? 1 : 0);
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (*month + (*month > 2 ? -3 : 9)) + 2) / 5 + *day - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const double days = static_cast<double>(era) * 146097 + doe - 719468;
  return days * 86400 + *hour * 3600 + *minute * 60 + *second + fraction - offset;
}

namespace {

MetricKind KindOf(ColumnUsage usage) {
  return usage == ColumnUsage::Counter     ? MetricKind::Counter
         : usage == ColumnUsage::Untyped   ? MetricKind::Untyped
         : usage == ColumnUsage::Histogram ? MetricKind::Histogram
                                           : MetricKind::Gauge;
}

// A one-dimensional PostgreSQL array of numbers in text form ("{1,2.5,NaN}"); nullopt otherwise.
std::optional<std::vector<double>> ParseNumberArray(std::string_view text) {
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return std::nullopt;
  std::vector<double> out;
  text = text.substr(1, text.size() - 2);
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"') item = item.substr(1, item.size() - 2);
    auto v = ParseSampleValue(item);
    if (!v) return std::nullopt;
    out.push_back(*v);
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  return out;
}

// A bucket bound as the text format writes it: shortest round-trip form, +Inf for infinity.
std::string BoundText(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

// `suffix` ({a="x"} or empty) with one more label.
std::string WithLabel(std::string_view suffix, std::string_view name, std::string_view value) {
  std::string out;
  if (suffix.empty()) {
    out = "{";
    AppendLabel(out, name, value, true);
  } else {
    out.assign(suffix.substr(0, suffix.size() - 1));
    AppendLabel(out, name, value, false);
  }
  out.push_back('}');
  return out;
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
  // per metric column: for a histogram, its _bucket, _sum and _count columns
  std::vector<std::optional<std::array<size_t, 3>>> histogram_parts;
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
  for (const Column& col : def.columns) {
    if (col.usage != ColumnUsage::Histogram) continue;
    for (const char* part : {"_bucket", "_sum", "_count"}) {
      if (std::find(table.columns.begin(), table.columns.end(), col.name + part) == table.columns.end())
        return "histogram column '" + col.name + "' needs the query to return " + col.name + "_bucket, " + col.name +
               "_sum and " + col.name + "_count";
    }
  }
  return "";
}

size_t ColumnIndex(const TableView& table, const std::string& name) {
  return static_cast<size_t>(std::find(table.columns.begin(), table.columns.end(), name) - table.columns.begin());
}

// Sorts the columns into labels and metrics, and makes one family per metric (and the info metric).
void PlanFamilies(const Definition& def, const TableView& table, Layout& layout, std::vector<Family>& families) {
  const std::vector<const Column*>& spec = layout.spec;
  for (size_t c = 0; c < spec.size(); ++c) {
    if (spec[c]->usage == ColumnUsage::RowsBeforeLimit) layout.before_limit_col = c;
    if (spec[c]->usage == ColumnUsage::Label) layout.label_cols.push_back(c);
    if (IsMetricUsage(spec[c]->usage)) {
      layout.metric_cols.push_back(c);
      layout.histogram_parts.emplace_back();
      if (spec[c]->usage == ColumnUsage::Histogram) {
        const std::string& n = table.columns[c];
        layout.histogram_parts.back() = std::array<size_t, 3>{
            ColumnIndex(table, n + "_bucket"), ColumnIndex(table, n + "_sum"), ColumnIndex(table, n + "_count")};
      }
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

// Row `r`'s histogram: a _bucket sample per bound (and +Inf, the count), then _sum and _count.
bool AddHistogram(const TableView& table, size_t col, const std::array<size_t, 3>& parts, size_t r, size_t number,
                  std::string_view suffix, Family& family, std::string& error) {
  const Cell& bounds_cell = table.at(r, col);
  const Cell& buckets_cell = table.at(r, parts[0]);
  auto bounds = ParseNumberArray(bounds_cell.view());
  auto buckets = buckets_cell.null ? std::nullopt : ParseNumberArray(buckets_cell.view());
  const Cell& sum_cell = table.at(r, parts[1]);
  const Cell& count_cell = table.at(r, parts[2]);
  double sum = 0, count = 0;
  bool numbers = !sum_cell.null && !count_cell.null;
  if (numbers) {
    const std::optional<double> s = ParseSampleValue(sum_cell.view()), c = ParseSampleValue(count_cell.view());
    numbers = s.has_value() && c.has_value();
    sum = s.value_or(0);
    count = c.value_or(0);
  }
  if (!bounds || !buckets || bounds->size() != buckets->size() || !numbers) {
    error = "histogram column '" + table.columns[col] + "' in row " + std::to_string(number) +
            ": needs arrays of numbers of one length in it and in " + table.columns[parts[0]] + ", and numbers in " +
            table.columns[parts[1]] + " and " + table.columns[parts[2]];
    return false;
  }
  for (size_t b = 0; b < bounds->size(); ++b)
    family.Add("_bucket" + WithLabel(suffix, "le", BoundText((*bounds)[b])), (*buckets)[b]);
  family.Add("_bucket" + WithLabel(suffix, "le", "+Inf"), count);
  family.Add("_sum" + std::string(suffix), sum);
  family.Add("_count" + std::string(suffix), count);
  return true;
}

// Adds row `r` of `table` (row `number` of the whole result, counted from 1) to the families;
// false (with out.error) on a value that is not a number.
bool AddRow(const Definition& def, const TableView& table, const Layout& layout, size_t r, size_t number,
            std::string_view suffix, uint32_t entry, MappedResult& out) {
  auto value_of = [&](size_t c) -> std::optional<double> {
    const Cell& cell = table.at(r, c);
    auto v = ParseSampleValue(cell.view());
    // postgres_exporter turns a timestamp into Unix seconds and a boolean into 1 or 0 (also as the
    // text 'true'/'false' a cast gives); its definitions may rely on that.
    if (!v && def.foreign_names) {
      if (cell.view() == "true" || cell.view() == "false") v = cell.view() == "true" ? 1.0 : 0.0;
      else v = ParseTimestampSeconds(cell.view());
    }
    if (!v) {
      out.error = "column '" + table.columns[c] + "' has value '" + std::string(cell.view()) + "' in row " +
                  std::to_string(number) + ", which is not a number";
      return std::nullopt;
    }
    return *v * layout.spec[c]->scale;
  };
  for (size_t i = 0; i < layout.metric_cols.size(); ++i) {
    if (table.at(r, layout.metric_cols[i]).null) continue;
    if (layout.histogram_parts[i]) {
      if (!AddHistogram(table, layout.metric_cols[i], *layout.histogram_parts[i], r, number, suffix, out.families[i],
                        out.error))
        return false;
      continue;
    }
    auto v = value_of(layout.metric_cols[i]);
    for (size_t a : layout.addends[i]) {
      if (!v || table.at(r, a).null) continue;
      auto more = value_of(a);
      v = more ? std::optional<double>(*v + *more) : std::nullopt;
    }
    if (!v) return false;
    out.families[i].AddShared(entry, *v);
  }
  if (def.info) out.families.back().AddShared(entry, 1);
  return true;
}

// Which label sets have been seen, over suffixes kept elsewhere: a kept row's in the result's
// SharedSuffixes, one left out by max_series in an arena of its own (a later row with the same
// labels is then a duplicate, not a new series). Open addressing over ids, no allocation per row.
class SeenLabels {
 public:
  explicit SeenLabels(const SharedSuffixes& kept) : kept_(kept) {}

  // Whether `suffix` was seen; if not, the slot where it goes (Claim* fills it).
  bool Seen(std::string_view suffix) {
    if ((count_ + 1) * 2 > slots_.size()) Rehash(std::max<size_t>(64, slots_.size() * 2));
    for (size_t i = Hash(suffix);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i] == 0) {
        free_ = i;
        return false;
      }
      if (Of(slots_[i] - 1) == suffix) return true;
    }
  }
  // After Seen said no: the suffix is kept entry `e` (already in `kept`).
  void ClaimKept(uint32_t e) { Claim(e * 2); }
  // After Seen said no: the suffix was left out; its duplicates still count as duplicates.
  void ClaimLeftOut(std::string_view suffix) { Claim(left_out_.Add(suffix) * 2 + 1); }

 private:
  size_t Hash(std::string_view s) const { return std::hash<std::string_view>()(s) & (slots_.size() - 1); }
  std::string_view Of(uint32_t id) const { return id % 2 ? left_out_.of(id / 2) : kept_.of(id / 2); }
  void Claim(uint32_t id) {
    slots_[free_] = id + 1;
    ++count_;
  }
  void Rehash(size_t capacity) {
    std::vector<uint32_t> old(capacity, 0);
    old.swap(slots_);
    for (uint32_t slot : old) {
      if (slot == 0) continue;
      size_t i = Hash(Of(slot - 1));
      while (slots_[i] != 0) i = (i + 1) & (slots_.size() - 1);
      slots_[i] = slot;
    }
  }

  const SharedSuffixes& kept_;
  SharedSuffixes left_out_;
  std::vector<uint32_t> slots_;  // id + 1; 0 = empty
  size_t count_ = 0;
  size_t free_ = 0;  // the empty slot the last Seen found
};

// Room for `more` elements, growing geometrically: a result read in batches grows its vectors
// once per batch, and an exact reservation each time would copy them every time.
template <typename V>
void MakeRoom(V& v, size_t more) {
  if (v.capacity() - v.size() < more) v.reserve(std::max(v.size() + more, v.capacity() * 2));
}

}  // namespace

struct RowMapper::State {
  State(const Definition& d, std::vector<std::pair<std::string, std::string>> labels)
      : def(d), extra_labels(std::move(labels)), shared(std::make_shared<SharedSuffixes>()), seen(*shared) {}

  const Definition& def;
  const std::vector<std::pair<std::string, std::string>> extra_labels;
  bool started = false;
  bool finished = false;
  std::vector<std::string> columns;  // the first batch's, which every later one must repeat
  Layout layout;
  std::string prefix;  // the extra labels, rendered once
  std::shared_ptr<SharedSuffixes> shared;
  SeenLabels seen;
  std::string suffix;  // the row being mapped
  size_t rows = 0;     // rows added so far, in every batch
  size_t expected_rows = 0;
  std::optional<double> rows_before_limit;
  MappedResult out;

  bool Start(const TableView& batch);
  void Suffix(const TableView& batch, size_t r);
  bool AddBatch(const TableView& batch);
};

bool RowMapper::State::Start(const TableView& batch) {
  started = true;
  columns = batch.columns;
  out.error = ResolveColumns(def, batch, layout);
  if (!out.error.empty()) return false;
  PlanFamilies(def, batch, layout, out.families);
  bool first = true;
  for (const auto& [k, v] : extra_labels) {
    AppendLabel(prefix, k, v, first);
    first = false;
  }
  for (size_t i = 0; i < out.families.size(); ++i) {
    if (i >= layout.histogram_parts.size() || !layout.histogram_parts[i]) out.families[i].shared = shared;
  }
  return true;
}

// Row `r`'s label suffix ({a="1",b="2"}, or empty without labels) into `suffix`.
void RowMapper::State::Suffix(const TableView& batch, size_t r) {
  suffix.clear();
  if (extra_labels.empty() && layout.label_cols.empty()) return;
  suffix.push_back('{');
  suffix.append(prefix);
  bool f = extra_labels.empty();
  for (size_t c : layout.label_cols) {
    const Cell& cell = batch.at(r, c);
    AppendLabel(suffix, layout.spec[c]->label, cell.null ? std::string_view() : cell.view(), f);
    f = false;
  }
  suffix.push_back('}');
}

// Values, duplicates, limits: every row of `batch` into the families. False on an unusable value.
bool RowMapper::State::AddBatch(const TableView& batch) {
  if (layout.before_limit_col && rows == 0 && batch.rows > 0) {
    // A self-limiting query reports on every row how many rows there were before its LIMIT.
    const Cell& cell = batch.at(0, *layout.before_limit_col);
    auto total = cell.null ? std::nullopt : ParseSampleValue(cell.view());
    if (!total || *total < 0 || *total != std::floor(*total)) {
      out.error = "column '" + batch.columns[*layout.before_limit_col] + "' (rows_before_limit) has value '" +
                  std::string(cell.null ? "NULL" : cell.view()) + "', which is not a row count";
      return false;
    }
    rows_before_limit = total;
  }
  // The first batch reserves for the rows expected in all, if more.
  const size_t more = rows == 0 ? std::max(batch.rows, expected_rows) : batch.rows;
  MakeRoom(shared->end, more);
  // The labels' text, guessed from the rows so far (or the columns, for the first batch).
  const size_t per_row = rows > 0 ? shared->text.size() / rows + 1 : prefix.size() + 16 * layout.label_cols.size() + 2;
  MakeRoom(shared->text, more * per_row);
  for (size_t i = 0; i < out.families.size(); ++i) {
    Family& f = out.families[i];
    if (f.shared) MakeRoom(f.entry, more);
    else MakeRoom(f.suffix_end, more);
    MakeRoom(f.values, more);
  }
  for (size_t r = 0; r < batch.rows; ++r) {
    const size_t number = ++rows;  // in the whole result, from 1
    size_t present = def.info ? 1 : 0;
    for (size_t c : layout.metric_cols) present += batch.at(r, c).null ? 0 : 1;
    if (number > def.max_rows) {
      out.dropped_limit += present;
      continue;
    }
    Suffix(batch, r);
    if (seen.Seen(suffix)) {
      out.dropped_duplicates += present;
      continue;
    }
    if (out.series + present > def.max_series) {
      seen.ClaimLeftOut(suffix);
      out.dropped_limit += present;
      continue;
    }
    const uint32_t entry = shared->Add(suffix);
    seen.ClaimKept(entry);
    if (!AddRow(def, batch, layout, r, number, suffix, entry, out)) return false;
    out.series += present;
  }
  return true;
}

RowMapper::RowMapper(const Definition& def, std::vector<std::pair<std::string, std::string>> extra_labels)
    : s_(std::make_unique<State>(def, std::move(extra_labels))) {}

RowMapper::~RowMapper() = default;

bool RowMapper::Batches(const Definition& def) { return !def.pivot && !def.NameSuffixColumn(); }

void RowMapper::Expect(size_t rows) { s_->expected_rows = rows; }

bool RowMapper::Add(const TableView& batch) {
  State& s = *s_;
  if (s.finished || !s.out.error.empty()) return false;
  if (!s.started) {
    if (!s.Start(batch)) return false;
  } else if (batch.columns != s.columns) {
    s.out.error = "the query's batches of rows came with different columns";
    return false;
  }
  return s.AddBatch(batch);
}

MappedResult RowMapper::Finish() {
  State& s = *s_;
  s.finished = true;
  MappedResult out = std::move(s.out);
  if (!s.started && out.error.empty()) out.error = "the query returned no result";
  if (!out.error.empty()) {
    out.families.clear();
    out.series = 0;
    return out;
  }
  // Rows the query left out never reached us: count each as one series per metric column.
  if (s.rows_before_limit && *s.rows_before_limit > static_cast<double>(s.rows))
    out.dropped_limit += static_cast<size_t>(*s.rows_before_limit - static_cast<double>(s.rows)) *
                         s.layout.metric_cols.size();
  // Cached results live for minutes: give back what the reservations did not use.
  s.shared->text.shrink_to_fit();
  s.shared->end.shrink_to_fit();
  for (Family& f : out.families) {
    f.entry.shrink_to_fit();
    f.suffix_end.shrink_to_fit();
    f.suffixes.shrink_to_fit();
    f.values.shrink_to_fit();
  }
  return out;
}

MappedResult MapRows(const Definition& def, const TableView& given,
                     const std::vector<std::pair<std::string, std::string>>& extra_labels) {
  MappedResult out;
  TableView pivoted;
  if (def.pivot && !PivotRows(def, given, pivoted, out.error)) return out;
  const TableView& table = def.pivot ? pivoted : given;
  if (def.NameSuffixColumn()) {
    Layout layout;
    out.error = ResolveColumns(def, table, layout);
    if (!out.error.empty()) return out;
    return MapNamedRows(def, table, layout.spec, extra_labels);
  }
  RowMapper mapper(def, extra_labels);
  mapper.Add(table);
  return mapper.Finish();
}

}  // namespace pgpulse::collectors
