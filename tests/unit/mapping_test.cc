#include "collectors/mapping.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "tests/harness/table_view.h"

namespace pgpulse::collectors {
namespace {

using testing::Table;

Definition Def(size_t max_series = 100) {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: act
    help: h
    sql: SELECT 1
    columns:
      datname: label
      state: {label: state}
      n: {gauge: pg_act, help: Sessions.}
      t: {counter: pg_act_seconds_total, help: Time., unit: seconds, scale: 0.001}
      note: ignore
)"}});
  EXPECT_TRUE(r.ok());
  Definition d = r.definitions.at(0);
  d.max_series = max_series;
  return d;
}

std::string Samples(const Family& f) { return testing::Samples({f}); }

TEST(Mapping, RowsBecomeOneFamilyPerMetricColumn) {
  Table t({"datname", "state", "n", "t", "note"},
          {{"app", "idle", "3", "1500", "x"}, {"app", "active", "1", "250", std::nullopt}});
  MappedResult m = MapRows(Def(), t.view, {});
  ASSERT_TRUE(m.error.empty()) << m.error;
  ASSERT_EQ(m.families.size(), 2u);
  EXPECT_EQ(m.families[0].name, "pg_act");
  EXPECT_EQ(m.families[0].kind, MetricKind::Gauge);
  EXPECT_EQ(m.families[1].kind, MetricKind::Counter);
  EXPECT_EQ(Samples(m.families[0]),
            "pg_act{datname=\"app\",state=\"idle\"} 3\npg_act{datname=\"app\",state=\"active\"} 1\n");
  EXPECT_EQ(Samples(m.families[1]),
            "pg_act_seconds_total{datname=\"app\",state=\"idle\"} 1.5\n"
            "pg_act_seconds_total{datname=\"app\",state=\"active\"} 0.25\n");
  EXPECT_EQ(m.series, 4u);
}

TEST(Mapping, ARowsLabelsAreStoredOnceForAllOfItsFamilies) {
  // Kept for a ttl, a per-table result with many metric columns would otherwise hold each
  // row's labels once per column; duplicate and limited rows are not kept at all.
  Table t(
      {"datname", "state", "n", "t", "note"},
      {{"app", "idle", "3", "1500", "x"}, {"app", "idle", "9", "9", "x"}, {"db", "active", "1", std::nullopt, "x"}});
  MappedResult m = MapRows(Def(), t.view, {{"target", "main"}});
  ASSERT_TRUE(m.error.empty()) << m.error;
  ASSERT_EQ(m.families.size(), 2u);
  ASSERT_TRUE(m.families[0].shared);
  EXPECT_EQ(m.families[0].shared, m.families[1].shared);
  EXPECT_EQ(m.families[0].shared->text,
            "{target=\"main\",datname=\"app\",state=\"idle\"}{target=\"main\",datname=\"db\",state=\"active\"}");
  EXPECT_EQ(m.families[0].suffix_bytes(), m.families[0].shared->text.size());
  EXPECT_EQ(m.families[1].size(), 1u);  // the second row's t is NULL
  EXPECT_EQ(m.families[1].suffix_bytes(), m.families[0].shared->of(0).size());

  // Adding a sample of its own copies the shared labels first; the other family keeps them.
  Family changed = m.families[1];
  changed.Add("{x=\"1\"}", 7);
  EXPECT_FALSE(changed.shared);
  EXPECT_EQ(Samples(changed),
            "pg_act_seconds_total{target=\"main\",datname=\"app\",state=\"idle\"} 1.5\n"
            "pg_act_seconds_total{x=\"1\"} 7\n");
  EXPECT_EQ(Samples(m.families[1]), "pg_act_seconds_total{target=\"main\",datname=\"app\",state=\"idle\"} 1.5\n");
}

TEST(Mapping, ExtraLabelsComeFirstAndValuesAreEscaped) {
  Table t({"datname", "state", "n", "t", "note"}, {{"we\"ird\\db\nx", std::nullopt, "1", "1", "x"}});
  MappedResult m = MapRows(Def(), t.view, {{"target", "main"}});
  ASSERT_TRUE(m.error.empty()) << m.error;
  EXPECT_EQ(std::string(m.families[0].suffix(0)), "{target=\"main\",datname=\"we\\\"ird\\\\db\\nx\",state=\"\"}");
}

TEST(Mapping, DuplicateLabelSetsAreDroppedAndCounted) {
  Table t({"datname", "state", "n", "t", "note"},
          {{"a", "idle", "1", "1", "x"}, {"a", "idle", "2", "2", "y"}, {"b", "idle", "3", "3", "z"}});
  MappedResult m = MapRows(Def(), t.view, {});
  ASSERT_TRUE(m.error.empty());
  EXPECT_EQ(m.families[0].size(), 2u);
  EXPECT_EQ(m.families[0].values[0], 1);  // the first row wins
  EXPECT_EQ(m.dropped_duplicates, 2u);
  EXPECT_EQ(m.series, 4u);
}

TEST(Mapping, SeriesBeyondTheLimitAreDroppedAndCounted) {
  Table t({"datname", "state", "n", "t", "note"},
          {{"a", "1", "1", "1", "x"}, {"b", "1", "1", "1", "x"}, {"c", "1", "1", "1", "x"}});
  MappedResult m = MapRows(Def(/*max_series=*/4), t.view, {});
  ASSERT_TRUE(m.error.empty());
  EXPECT_EQ(m.series, 4u);
  EXPECT_EQ(m.dropped_limit, 2u);
  EXPECT_EQ(m.families[0].size(), 2u);
}

// Rows in batches of `size`, as a cursor's FETCHes bring them.
MappedResult MapInBatches(const Definition& d, const std::vector<std::string>& columns,
                          const std::vector<std::vector<std::optional<std::string>>>& rows, size_t size,
                          const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  RowMapper mapper(d, extra);
  if (size % 2) mapper.Expect(rows.size());  // reserved up front, or grown batch by batch: the same
  for (size_t at = 0; at < rows.size() || at == 0; at += size) {
    std::vector<std::vector<std::optional<std::string>>> batch(
        rows.begin() + static_cast<std::ptrdiff_t>(std::min(at, rows.size())),
        rows.begin() + static_cast<std::ptrdiff_t>(std::min(at + size, rows.size())));
    Table t(columns, batch);
    mapper.Add(t.view);
    if (rows.empty()) break;
  }
  return mapper.Finish();
}

TEST(RowMapper, BatchesMapToWhatTheWholeResultMapsTo) {
  // Duplicates across batches, a null, max_rows ending inside a batch, max_series reached, and a
  // duplicate of a row max_series left out (a duplicate, not a new series).
  Definition d = Def(/*max_series=*/9);
  d.max_rows = 8;
  const std::vector<std::string> columns = {"datname", "state", "n", "t", "note"};
  const std::vector<std::vector<std::optional<std::string>>> rows = {
      {"a", "idle", "1", "10", "x"},        {"b", "idle", "2", std::nullopt, "x"}, {"a", "idle", "3", "30", "x"},
      {"c", "active", "4", "40", "x"},      {"d", "idle", "5", "50", "x"},         {"e", "idle", "6", "60", "x"},
      {"e", "idle", "7", "70", "x"},        {"b", "idle", "8", "80", "x"},         {"f", "idle", "9", "90", "x"},
      {"g", "idle", std::nullopt, "1", "x"}};
  Table whole(columns, rows);
  const MappedResult expected = MapRows(d, whole.view, {{"target", "main"}});
  ASSERT_TRUE(expected.error.empty()) << expected.error;
  EXPECT_EQ(expected.series, 9u);
  EXPECT_GT(expected.dropped_duplicates, 0u);
  EXPECT_GT(expected.dropped_limit, 0u);
  for (size_t size : {1, 2, 3, 4, 7, 10, 11}) {
    const MappedResult m = MapInBatches(d, columns, rows, size, {{"target", "main"}});
    ASSERT_TRUE(m.error.empty()) << "batches of " << size << ": " << m.error;
    EXPECT_EQ(testing::Samples(m.families), testing::Samples(expected.families)) << "batches of " << size;
    EXPECT_EQ(m.series, expected.series) << "batches of " << size;
    EXPECT_EQ(m.dropped_duplicates, expected.dropped_duplicates) << "batches of " << size;
    EXPECT_EQ(m.dropped_limit, expected.dropped_limit) << "batches of " << size;
  }
}

TEST(RowMapper, AnErrorInALaterBatchNamesTheRowOfTheWholeResultAndKeepsNothing) {
  const std::vector<std::string> columns = {"datname", "state", "n", "t", "note"};
  std::vector<std::vector<std::optional<std::string>>> rows;
  for (int i = 0; i < 7; ++i) rows.push_back({"db" + std::to_string(i), "idle", "1", "1", "x"});
  rows[5][2] = "lots";
  const MappedResult m = MapInBatches(Def(), columns, rows, 3);
  EXPECT_EQ(m.error, "column 'n' has value 'lots' in row 6, which is not a number");
  EXPECT_TRUE(m.families.empty());
  EXPECT_EQ(m.series, 0u);
}

TEST(RowMapper, BatchesWithOtherColumnsOrNoneAtAllAreErrors) {
  Table first({"datname", "state", "n", "t", "note"}, {{"a", "idle", "1", "1", "x"}});
  Table other({"datname", "state", "n", "t"}, {{"b", "idle", "1", "1"}});
  const Definition d = Def();
  RowMapper mapper(d, {});
  EXPECT_TRUE(mapper.Add(first.view));
  EXPECT_FALSE(mapper.Add(other.view));
  const MappedResult m = mapper.Finish();
  EXPECT_EQ(m.error, "the query's batches of rows came with different columns");
  EXPECT_TRUE(m.families.empty());

  RowMapper nothing(d, {});
  EXPECT_EQ(nothing.Finish().error, "the query returned no result");
}

TEST(RowMapper, RowsBeforeLimitComesFromTheFirstBatchAndCountsEveryBatch) {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: top
    help: h
    max_rows: 4
    sql: SELECT 1
    columns:
      relname: label
      a: {gauge: pg_a, help: A.}
      total: rows_before_limit
)"}});
  ASSERT_TRUE(r.ok());
  const std::vector<std::string> columns = {"relname", "a", "total"};
  const std::vector<std::vector<std::optional<std::string>>> rows = {
      {"w", "1", "10"}, {"x", "2", "10"}, {"y", "3", "10"}, {"z", "4", "10"}};
  const MappedResult m = MapInBatches(r.definitions[0], columns, rows, 3);
  ASSERT_TRUE(m.error.empty()) << m.error;
  EXPECT_EQ(m.series, 4u);
  EXPECT_EQ(m.dropped_limit, 6u);  // 10 rows before the limit, 4 returned
}

TEST(RowMapper, PivotAndNameSuffixDefinitionsAreReadWhole) {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: settings
    help: h
    sql: SELECT 1
    columns:
      name: {name_suffix: pg_settings_}
      setting: {gauge: pg_settings, help: S.}
)",
                                         /*foreign_names=*/true}});
  ASSERT_TRUE(r.ok()) << r.errors.front();
  EXPECT_FALSE(RowMapper::Batches(r.definitions[0]));
  EXPECT_TRUE(RowMapper::Batches(Def()));
}

TEST(Mapping, RowsBeyondMaxRowsAreDroppedInQueryOrder) {
  Definition d = Def();
  d.max_rows = 2;
  Table t({"datname", "state", "n", "t", "note"},
          {{"a", "1", "1", "1", "x"}, {"b", "1", "1", "1", "x"}, {"c", "1", "1", "1", "x"}});
  MappedResult m = MapRows(d, t.view, {});
  ASSERT_TRUE(m.error.empty());
  EXPECT_EQ(m.families[0].size(), 2u);
  EXPECT_EQ(std::string(m.families[0].suffix(1)), "{datname=\"b\",state=\"1\"}");
  EXPECT_EQ(m.dropped_limit, 2u);
}

TEST(Mapping, RowsTheQueryLeftOutAreCountedFromRowsBeforeLimit) {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: top
    help: h
    max_rows: 2
    sql: SELECT 1
    columns:
      relname: label
      a: {gauge: pg_a, help: A.}
      b: {counter: pg_b_total, help: B.}
      total: rows_before_limit
)"}});
  ASSERT_TRUE(r.ok());
  const Definition& d = r.definitions[0];
  // The query returned its first 2 of 5 rows: 3 rows with 2 metric columns each were left out.
  Table t({"relname", "a", "b", "total"}, {{"x", "1", "2", "5"}, {"y", "3", "4", "5"}});
  MappedResult m = MapRows(d, t.view, {});
  ASSERT_TRUE(m.error.empty()) << m.error;
  EXPECT_EQ(m.series, 4u);
  EXPECT_EQ(m.families.size(), 2u);
  EXPECT_EQ(m.dropped_limit, 6u);

  Table all({"relname", "a", "b", "total"}, {{"x", "1", "2", "2"}, {"y", "3", "4", "2"}});
  EXPECT_EQ(MapRows(d, all.view, {}).dropped_limit, 0u);

  Table empty({"relname", "a", "b", "total"}, {});
  MappedResult none = MapRows(d, empty.view, {});
  EXPECT_TRUE(none.error.empty());
  EXPECT_EQ(none.dropped_limit, 0u);

  Table bad({"relname", "a", "b", "total"}, {{"x", "1", "2", "many"}});
  MappedResult b = MapRows(d, bad.view, {});
  EXPECT_NE(b.error.find("column 'total' (rows_before_limit) has value 'many'"), std::string::npos) << b.error;
  EXPECT_TRUE(b.families.empty());
}

TEST(Mapping, NullValueEmitsNoSample) {
  Table t({"datname", "state", "n", "t", "note"}, {{"a", "idle", std::nullopt, "5", "x"}});
  MappedResult m = MapRows(Def(), t.view, {});
  ASSERT_TRUE(m.error.empty());
  EXPECT_EQ(m.families[0].size(), 0u);
  EXPECT_EQ(m.families[1].size(), 1u);
  EXPECT_EQ(m.series, 1u);
}

TEST(Mapping, UndescribedResultColumnIsAnError) {
  Table t({"datname", "state", "n", "t", "note", "surprise"}, {{"a", "b", "1", "1", "x", "?"}});
  MappedResult m = MapRows(Def(), t.view, {});
  EXPECT_NE(m.error.find("'surprise'"), std::string::npos) << m.error;
  EXPECT_TRUE(m.families.empty());
}

TEST(Mapping, DescribedColumnMissingFromResultIsAnError) {
  Table t({"datname", "state", "n", "note"}, {{"a", "b", "1", "x"}});
  MappedResult m = MapRows(Def(), t.view, {});
  EXPECT_NE(m.error.find("column 't' is described but the query did not return it"), std::string::npos) << m.error;
}

TEST(Mapping, NonNumericValueIsAnErrorNamingColumnAndRow) {
  Table t({"datname", "state", "n", "t", "note"}, {{"a", "b", "1", "1", "x"}, {"a", "c", "lots", "1", "x"}});
  MappedResult m = MapRows(Def(), t.view, {});
  EXPECT_NE(m.error.find("column 'n' has value 'lots' in row 2"), std::string::npos) << m.error;
  EXPECT_TRUE(m.families.empty());
}

TEST(Mapping, ParsesPostgresTextValues) {
  EXPECT_EQ(ParseSampleValue("t"), 1.0);
  EXPECT_EQ(ParseSampleValue("f"), 0.0);
  EXPECT_EQ(ParseSampleValue("42"), 42.0);
  EXPECT_EQ(ParseSampleValue("-1.5e3"), -1500.0);
  EXPECT_EQ(ParseSampleValue("12345678901234567890"), 12345678901234567890.0);
  EXPECT_TRUE(std::isnan(*ParseSampleValue("NaN")));
  EXPECT_EQ(ParseSampleValue("Infinity"), HUGE_VAL);
  EXPECT_EQ(ParseSampleValue("-Infinity"), -HUGE_VAL);
  EXPECT_TRUE(std::isinf(*ParseSampleValue("1e400")));
  EXPECT_FALSE(ParseSampleValue(""));
  EXPECT_FALSE(ParseSampleValue("12abc"));
  EXPECT_FALSE(ParseSampleValue("{1,2}"));
}

}  // namespace
}  // namespace pgpulse::collectors

namespace pgpulse::collectors {
namespace {

// postgres_exporter's HISTOGRAM (foreign names only): bounds and cumulative counts as arrays.
Definition HistogramDef() {
  LoadResult r = LoadDefinitions({Source{"pe.yaml", R"(collectors:
  - name: idle
    help: h
    sql: SELECT 1
    ignore_other_columns: true
    columns:
      app: label
      seconds: {histogram: pg_idle_seconds, help: Idle time.}
)",
                                         true}});
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0]);
  return r.definitions.at(0);
}

TEST(Mapping, HistogramColumnsBecomeBucketsSumAndCount) {
  Table t({"app", "seconds", "seconds_bucket", "seconds_sum", "seconds_count"},
          {{"psql", "{1,2.5,300}", "{0,1,3}", "412.5", "4"}});
  MappedResult m = MapRows(HistogramDef(), t.view, {});
  ASSERT_TRUE(m.error.empty()) << m.error;
  ASSERT_EQ(m.families.size(), 1u);
  EXPECT_EQ(m.families[0].kind, MetricKind::Histogram);
  EXPECT_EQ(Samples(m.families[0]),
            "pg_idle_seconds_bucket{app=\"psql\",le=\"1\"} 0\n"
            "pg_idle_seconds_bucket{app=\"psql\",le=\"2.5\"} 1\n"
            "pg_idle_seconds_bucket{app=\"psql\",le=\"300\"} 3\n"
            "pg_idle_seconds_bucket{app=\"psql\",le=\"+Inf\"} 4\n"
            "pg_idle_seconds_sum{app=\"psql\"} 412.5\n"
            "pg_idle_seconds_count{app=\"psql\"} 4\n");
}

TEST(Mapping, HistogramWithMismatchedArraysIsAnError) {
  Table t({"app", "seconds", "seconds_bucket", "seconds_sum", "seconds_count"}, {{"psql", "{1,2}", "{0}", "1", "1"}});
  MappedResult m = MapRows(HistogramDef(), t.view, {});
  EXPECT_NE(m.error.find("histogram column 'seconds' in row 1"), std::string::npos) << m.error;
  Table missing({"app", "seconds"}, {{"psql", "{1}"}});
  EXPECT_NE(MapRows(HistogramDef(), missing.view, {}).error.find("needs the query to return seconds_bucket"),
            std::string::npos);
  auto strict = LoadDefinitions({Source{"user.yaml",
                                        "collectors:\n  - name: x\n    help: h\n    sql: SELECT 1\n"
                                        "    columns:\n      s: {histogram: x_seconds, help: h}\n"}});
  EXPECT_FALSE(strict.ok()) << "histogram is for the postgres_exporter profile only";
}

}  // namespace
}  // namespace pgpulse::collectors

namespace pgpulse::collectors {
namespace {

TEST(Mapping, TimestampsAreUnixSecondsForForeignNamesOnly) {
  EXPECT_EQ(ParseTimestampSeconds("1970-01-01 00:00:00+00"), 0.0);
  EXPECT_EQ(ParseTimestampSeconds("2024-02-29 12:30:15.25+00"), 1709209815.25);
  EXPECT_EQ(ParseTimestampSeconds("2024-02-29 14:30:15.25+02"), 1709209815.25);
  EXPECT_EQ(ParseTimestampSeconds("2024-02-29 12:00:15-00:30"), 1709209815.0);
  EXPECT_FALSE(ParseTimestampSeconds("2024-02-29"));
  EXPECT_FALSE(ParseTimestampSeconds("yesterday"));
  EXPECT_FALSE(ParseTimestampSeconds("2024-02-29 12:30:15+0x"));
}

}  // namespace
}  // namespace pgpulse::collectors
