#include <benchmark/benchmark.h>
#include <prometheus/text_serializer.h>

#include <charconv>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "collectors/exposition.h"
#include "collectors/family.h"
#include "collectors/mapping.h"

namespace pgpulse::collectors {
namespace {

constexpr size_t kSamples = 100000;

// Rows shaped like pg_stat_statements joined with pg_stat_activity: four
// label columns (datname, usename, queryid, state) and one value column, all
// text as libpq returns them. Values mix counters and fractional milliseconds.
std::vector<std::vector<std::string>> Rows() {
  std::mt19937_64 random(42);
  const char* states[] = {"active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath"};
  std::vector<std::vector<std::string>> rows;
  rows.reserve(kSamples);
  for (size_t i = 0; i < kSamples; ++i) {
    std::string value = i % 2 ? std::to_string(random() % 100000000)
                              : std::to_string(static_cast<double>(random() % 100000000) / 1000.0);
    rows.push_back({"app_db_" + std::to_string(i % 40), "svc_user_" + std::to_string(i % 13),
                    std::to_string(static_cast<int64_t>(random())), states[i % 5], value});
  }
  return rows;
}

double ParseValue(const std::string& text) {
  double value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

Family Build(const std::vector<std::vector<std::string>>& rows) {
  static constexpr std::string_view kLabels[] = {"datname", "usename", "queryid", "state"};
  Family family;
  family.name = "pg_stat_statements_exec_time_ms";
  family.help = "Time spent executing the statement, in milliseconds.";
  family.kind = MetricKind::Counter;
  family.suffixes.reserve(rows.size() * 128);
  family.suffix_end.reserve(rows.size());
  family.values.reserve(rows.size());
  std::string suffix;
  for (const auto& row : rows) {
    suffix.assign(1, '{');
    for (size_t column = 0; column < 4; ++column) AppendLabel(suffix, kLabels[column], row[column], column == 0);
    suffix.push_back('}');
    family.Add(suffix, ParseValue(row[4]));
  }
  return family;
}

std::vector<prometheus::MetricFamily> BuildPrometheus(const std::vector<std::vector<std::string>>& rows) {
  prometheus::MetricFamily family;
  family.name = "pg_stat_statements_exec_time_ms";
  family.help = "Time spent executing the statement, in milliseconds.";
  family.type = prometheus::MetricType::Counter;
  for (const auto& row : rows) {
    prometheus::ClientMetric metric;
    metric.label = {{"datname", row[0]}, {"usename", row[1]}, {"queryid", row[2]}, {"state", row[3]}};
    metric.counter.value = ParseValue(row[4]);
    family.metric.push_back(std::move(metric));
  }
  return {family};
}

void BM_WriteExposition(benchmark::State& state) {
  Family family = Build(Rows());
  std::string out;
  for (auto _ : state) {
    out.clear();
    WriteExposition(out, {&family});
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kSamples));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_WriteExposition)->Unit(benchmark::kMillisecond);

void BM_TextSerializer(benchmark::State& state) {
  std::vector<prometheus::MetricFamily> families = BuildPrometheus(Rows());
  prometheus::TextSerializer serializer;
  for (auto _ : state) {
    std::string out = serializer.Serialize(families);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kSamples));
}
BENCHMARK(BM_TextSerializer)->Unit(benchmark::kMillisecond);

// The collector path as the agent runs it: a query result (text cells, as
// libpq returns them) through MapRows (labels, values, duplicate and limit
// checks) and WriteExposition.
void BM_RowsToText(benchmark::State& state) {
  std::vector<std::vector<std::string>> rows = Rows();
  LoadResult defs = LoadDefinitions({Source{"bench.yaml", R"(collectors:
  - name: statements
    help: Benchmark shape.
    max_series: 1000000
    sql: SELECT 1
    columns:
      datname: label
      usename: label
      queryid: label
      state: label
      exec_time_ms: {counter: pg_statements_exec_time_seconds_total, help: Time., unit: seconds, scale: 0.001}
)"}});
  if (!defs.ok()) {
    state.SkipWithError(defs.errors.front().c_str());
    return;
  }
  TableView table;
  table.columns = {"datname", "usename", "queryid", "state", "exec_time_ms"};
  table.rows = rows.size();
  for (const auto& row : rows) {
    for (const std::string& cell : row) table.cells.push_back(Cell{cell.data(), cell.size(), false});
  }
  std::string out;
  for (auto _ : state) {
    MappedResult mapped = MapRows(defs.definitions[0], table, {});
    std::vector<const Family*> families;
    for (const Family& f : mapped.families) families.push_back(&f);
    out.clear();
    WriteExposition(out, families);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kSamples));
}
BENCHMARK(BM_RowsToText)->Unit(benchmark::kMillisecond);

// pg_stat_statements-shaped: 10,000 rows of 4 labels and 10 metric columns,
// the same 100,000 samples; the label block is built once per row.
void BM_RowsToTextWideRows(benchmark::State& state) {
  constexpr size_t kRows = kSamples / 10;
  std::string yaml = R"(collectors:
  - name: statements
    help: Benchmark shape.
    max_series: 1000000
    sql: SELECT 1
    columns:
      datname: label
      usename: label
      queryid: label
      toplevel: label
)";
  std::vector<std::string> columns = {"datname", "usename", "queryid", "toplevel"};
  for (int m = 0; m < 10; ++m) {
    columns.push_back("m" + std::to_string(m));
    yaml += "      m" + std::to_string(m) + ": {counter: pg_bench_m" + std::to_string(m) + "_total, help: M.}\n";
  }
  LoadResult defs = LoadDefinitions({Source{"bench.yaml", yaml}});
  if (!defs.ok()) {
    state.SkipWithError(defs.errors.front().c_str());
    return;
  }
  std::vector<std::vector<std::string>> rows = Rows();
  std::vector<std::string> storage;
  storage.reserve(kRows * columns.size());
  for (size_t r = 0; r < kRows; ++r) {
    storage.push_back(rows[r][0]);
    storage.push_back(rows[r][1]);
    storage.push_back(rows[r][2]);
    storage.push_back(r % 2 ? "t" : "f");
    for (int m = 0; m < 10; ++m) storage.push_back(rows[r * 10 + m][4]);
  }
  TableView table;
  table.columns = columns;
  table.rows = kRows;
  for (const std::string& cell : storage) table.cells.push_back(Cell{cell.data(), cell.size(), false});
  std::string out;
  for (auto _ : state) {
    MappedResult mapped = MapRows(defs.definitions[0], table, {});
    std::vector<const Family*> families;
    for (const Family& f : mapped.families) families.push_back(&f);
    out.clear();
    WriteExposition(out, families);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kRows * 10));
}
BENCHMARK(BM_RowsToTextWideRows)->Unit(benchmark::kMillisecond);

void BM_AppendValue(benchmark::State& state) {
  std::mt19937_64 random(1);
  std::vector<double> values;
  for (size_t i = 0; i < 4096; ++i) {
    values.push_back(i % 2 ? static_cast<double>(random() % 100000000)
                           : static_cast<double>(random() % 100000000) / 1000.0);
  }
  std::string out;
  out.reserve(values.size() * 24);
  for (auto _ : state) {
    out.clear();
    for (double value : values) AppendValue(out, value);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * values.size()));
}
BENCHMARK(BM_AppendValue);

}  // namespace
}  // namespace pgpulse::collectors

BENCHMARK_MAIN();
