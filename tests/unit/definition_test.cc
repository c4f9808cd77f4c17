#include "collectors/definition.h"
#include "agent/sources/dumps.h"
#include "agent/sources/logs.h"
#include "agent/sources/pgbackrest.h"
#include "collectors/reference.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace pgpulse::collectors {
namespace {

LoadResult LoadOne(const std::string& text) { return LoadDefinitions({Source{"test.yaml", text}}); }

std::string AllErrors(const LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e + "\n";
  return s;
}

const char* kValid = R"(collectors:
  - name: locks
    help: Locks held.
    scope: database
    ttl: 30s
    timeout: 1500ms
    requires: {extension: pg_stat_statements, role: primary}
    max_series: 50
    run_in: SELECT datname FROM pg_stat_progress_vacuum
    run_if: SELECT true
    variants:
      - max_version: 140000
        sql: SELECT 'a' AS mode, 1 AS n
      - min_version: 140000
        sql: SELECT 'b' AS mode, 2 AS n
    columns:
      mode: {label: lock_mode}
      n: {gauge: pg_locks, help: Locks., unit: ""}
)";

TEST(Definition, ParsesEveryField) {
  LoadResult r = LoadOne(kValid);
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.definitions.size(), 1u);
  const Definition& d = r.definitions[0];
  EXPECT_EQ(d.name, "locks");
  EXPECT_EQ(d.help, "Locks held.");
  EXPECT_EQ(d.scope, Scope::Database);
  EXPECT_EQ(d.ttl, Millis(30000));
  EXPECT_EQ(d.timeout, Millis(1500));
  EXPECT_EQ(d.required_extension.value_or(""), "pg_stat_statements");
  EXPECT_EQ(d.required_role, Role::Primary);
  EXPECT_EQ(d.max_series, 50u);
  EXPECT_EQ(d.run_in_sql, "SELECT datname FROM pg_stat_progress_vacuum");
  EXPECT_EQ(d.run_if_sql, "SELECT true");
  ASSERT_EQ(d.variants.size(), 2u);
  ASSERT_EQ(d.columns.size(), 2u);
  EXPECT_EQ(d.columns[0].usage, ColumnUsage::Label);
  EXPECT_EQ(d.columns[0].label, "lock_mode");
  EXPECT_EQ(d.columns[1].usage, ColumnUsage::Gauge);
  EXPECT_EQ(d.columns[1].metric, "pg_locks");
  EXPECT_EQ(d.origin, "test.yaml:2:5");
}

TEST(Definition, ChoosesVariantByVersionWithExclusiveUpperBound) {
  LoadResult r = LoadOne(kValid);
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  const Definition& d = r.definitions[0];
  EXPECT_NE(d.VariantFor(139999)->sql.find("'a'"), std::string::npos);
  EXPECT_NE(d.VariantFor(140000)->sql.find("'b'"), std::string::npos);
  EXPECT_NE(d.VariantFor(180000)->sql.find("'b'"), std::string::npos);
}

TEST(Definition, GapInVersionsMeansNoVariant) {
  LoadResult r = LoadOne(R"(collectors:
  - name: x
    help: h
    variants:
      - {min_version: 120000, max_version: 130000, sql: SELECT 1 AS v}
      - {min_version: 140000, sql: SELECT 2 AS v}
    columns: {v: {gauge: pg_x, help: h}}
)");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.definitions[0].VariantFor(135000), nullptr);
  EXPECT_EQ(r.definitions[0].VariantFor(110000), nullptr);
  EXPECT_NE(r.definitions[0].VariantFor(125000), nullptr);
}

struct Rejection {
  const char* name;
  const char* yaml;
  const char* expected;  // substring of the error, which must also carry file:line:col
};

class DefinitionRejects : public ::testing::TestWithParam<Rejection> {};

TEST_P(DefinitionRejects, WithPositionAndReason) {
  LoadResult r = LoadOne(GetParam().yaml);
  ASSERT_FALSE(r.ok()) << "accepted: " << GetParam().yaml;
  EXPECT_TRUE(r.definitions.empty()) << "half-loaded";
  std::string all = AllErrors(r);
  EXPECT_NE(all.find(GetParam().expected), std::string::npos) << all;
  EXPECT_EQ(all.rfind("test.yaml:", 0), 0u) << all;
  EXPECT_NE(all.find_first_of("0123456789"), std::string::npos) << all;
}

#define BASE "collectors:\n  - name: x\n    help: h\n"
INSTANTIATE_TEST_SUITE_P(
    All, DefinitionRejects,
    ::testing::Values(
        Rejection{"UnknownKey",
                  BASE "    sql: SELECT 1 AS v\n    colums: {}\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "unknown key 'colums'"},
        Rejection{"UnknownColumnKey",
                  BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h, colour: red}}\n",
                  "unknown key 'colour'"},
        Rejection{"WrongTypeTimeout",
                  BASE "    timeout: [1]\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "timeout must be a duration"},
        Rejection{"BadDuration",
                  BASE "    ttl: 5 minutes\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "got '5 minutes'"},
        Rejection{"WrongTypeMaxSeries",
                  BASE "    max_series: lots\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "max_series must be an integer"},
        Rejection{"BadScope",
                  BASE "    scope: cluster\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "must be 'server' or 'database'"},
        Rejection{"RunInWithServerScope",
                  BASE "    run_in: SELECT 'db'\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "run_in: only a PostgreSQL collector with scope: database runs in chosen databases"},
        Rejection{
            "RunInEmpty",
            BASE
            "    scope: database\n    run_in: ' '\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
            "run_in: empty query"},
        Rejection{
            "RunInNotText",
            BASE
            "    scope: database\n    run_in: [a]\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
            "run_in"},
        Rejection{"RunIfEmpty",
                  BASE "    run_if: ''\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "run_if: empty query"},
        Rejection{"RunIfWithPivot",
                  BASE "    run_if: SELECT true\n    sql: SELECT 'a' AS k, 1 AS v\n    pivot: {key: k, value: v}\n"
                       "    columns: {a: {gauge: pg_x, help: h}}\n",
                  "run_if: not with pivot"},
        Rejection{"BadRole",
                  BASE
                  "    requires: {role: leader}\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "must be primary, replica or any"},
        Rejection{"InvalidMetricName", BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: 9bad-name, help: h}}\n",
                  "invalid metric name '9bad-name'"},
        Rejection{"InvalidLabelName",
                  BASE
                  "    sql: SELECT 1 AS v, 2 AS w\n    columns: {w: {label: __reserved}, v: {gauge: pg_x, help: h}}\n",
                  "invalid label name '__reserved'"},
        Rejection{"CounterWithoutTotal", BASE "    sql: SELECT 1 AS v\n    columns: {v: {counter: pg_x, help: h}}\n",
                  "must end in _total"},
        Rejection{"GaugeWithTotal", BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x_total, help: h}}\n",
                  "must not end in _total"},
        Rejection{"UnitMissingFromName",
                  BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h, unit: seconds}}\n",
                  "must carry its unit '_seconds'"},
        Rejection{"MetricWithoutHelp", BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x}}\n",
                  "needs a help text"},
        Rejection{"NoMetricColumn", BASE "    sql: SELECT 1 AS v\n    columns: {v: label}\n", "produces nothing"},
        Rejection{"TwoKindsInOneColumn",
                  BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, counter: pg_y_total, help: h}}\n",
                  "exactly one of label, gauge, counter, ignore"},
        Rejection{
            "DuplicateMetricInCollector",
            BASE
            "    sql: SELECT 1 AS v, 2 AS w\n    columns: {v: {gauge: pg_x, help: h}, w: {gauge: pg_x, help: h}}\n",
            "produced by two columns"},
        Rejection{"DuplicateLabel",
                  BASE "    sql: SELECT 1 AS a, 1 AS b, 1 AS v\n    columns: {a: {label: l}, b: {label: l}, v: {gauge: "
                       "pg_x, help: h}}\n",
                  "label 'l' is produced by columns 'a' and 'b'"},
        Rejection{"OverlappingVersions",
                  BASE "    variants:\n      - {min_version: 120000, max_version: 150000, sql: SELECT 1 AS v}\n"
                       "      - {min_version: 140000, sql: SELECT 1 AS v}\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "overlaps"},
        Rejection{"EmptyVersionRange",
                  BASE "    variants:\n      - {min_version: 150000, max_version: 150000, sql: SELECT 1 AS v}\n"
                       "    columns: {v: {gauge: pg_x, help: h}}\n",
                  "must be below max_version"},
        Rejection{"SqlAndVariants",
                  BASE "    sql: SELECT 1 AS v\n    variants:\n      - {sql: SELECT 1 AS v}\n    columns: {v: {gauge: "
                       "pg_x, help: h}}\n",
                  "either 'sql' or 'variants'"},
        Rejection{"MissingSql", BASE "    columns: {v: {gauge: pg_x, help: h}}\n", "missing required key 'sql'"},
        Rejection{"MissingColumns", BASE "    sql: SELECT 1 AS v\n", "missing required key 'columns'"},
        Rejection{"MissingName",
                  "collectors:\n  - help: h\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "missing required key 'name'"},
        Rejection{"BadCollectorName",
                  "collectors:\n  - name: Bad-Name\n    help: h\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: "
                  "pg_x, help: h}}\n",
                  "name must match"},
        Rejection{"DatnameOnDatabaseScope",
                  BASE "    scope: database\n    sql: SELECT 1 AS v, 'x' AS datname\n    columns: {datname: label, v: "
                       "{gauge: pg_x, help: h}}\n",
                  "label 'datname' is added by the agent"},
        Rejection{"DuplicateKey",
                  BASE "    help: again\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n",
                  "key 'help' is given twice"},
        Rejection{"NotAList", "collectors: {name: x}\n", "'collectors' must be a list"},
        Rejection{"TopLevelUnknown", "collectors: []\nextra: 1\n", "unknown key 'extra'"},
        Rejection{"YamlSyntax", "collectors:\n  - name: [unclosed\n", "YAML syntax error"},
        Rejection{"SameNameTwiceInFile",
                  BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n"
                       "  - name: x\n    help: h\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_y, help: h}}\n",
                  "defined twice in this file"}),
    [](const ::testing::TestParamInfo<Rejection>& info) { return std::string(info.param.name); });

TEST(Definition, ReportsTheLineAndColumnOfTheBadKey) {
  LoadResult r = LoadOne(BASE "    sql: SELECT 1 AS v\n    colums: {}\n    columns: {v: {gauge: pg_x, help: h}}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(AllErrors(r).find("test.yaml:5:5: collector 'x': unknown key 'colums'"), std::string::npos) << AllErrors(r);
}

TEST(Definition, ReportsEveryErrorNotJustTheFirst) {
  LoadResult r = LoadOne(
      BASE "    ttl: soon\n    scope: nowhere\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n");
  EXPECT_EQ(r.errors.size(), 2u) << AllErrors(r);
}

TEST(Definition, LaterSourceOverridesByName) {
  LoadResult r = LoadDefinitions({
      Source{"a.yaml", BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n"},
      Source{"b.yaml", BASE "    sql: SELECT 2 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n"},
  });
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.definitions.size(), 1u);
  EXPECT_EQ(r.definitions[0].variants[0].sql, "SELECT 2 AS v");
  EXPECT_EQ(r.definitions[0].origin.rfind("b.yaml", 0), 0u);
}

TEST(Definition, SameMetricFromTwoCollectorsIsRejected) {
  LoadResult r = LoadDefinitions({
      Source{"a.yaml", BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n"},
      Source{
          "b.yaml",
          "collectors:\n  - name: y\n    help: h\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n"},
  });
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.definitions.empty());
  EXPECT_NE(AllErrors(r).find("metric 'pg_x' is already produced by collector 'x'"), std::string::npos) << AllErrors(r);
}

TEST(Definition, OneBadFileRejectsEverything) {
  LoadResult r = LoadDefinitions({
      Source{"good.yaml", BASE "    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n"},
      Source{"bad.yaml", "collectors: [\n"},
  });
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.definitions.empty());
  EXPECT_NE(AllErrors(r).find("bad.yaml:"), std::string::npos);
}

TEST(Definition, ShorthandColumnsAndScale) {
  LoadResult r = LoadOne(BASE
                         "    sql: SELECT 1 AS v, 'a' AS state, 3 AS junk\n"
                         "    columns:\n      state: label\n      junk: ignore\n"
                         "      v: {counter: pg_x_seconds_total, help: h, unit: seconds, scale: 0.001}\n");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  const Definition& d = r.definitions[0];
  EXPECT_EQ(d.FindColumn("state")->label, "state");
  EXPECT_EQ(d.FindColumn("junk")->usage, ColumnUsage::Ignore);
  EXPECT_DOUBLE_EQ(d.FindColumn("v")->scale, 0.001);
}

TEST(Definition, MaxRowsAndEnabled) {
  LoadResult r = LoadOne(
      BASE "    enabled: false\n    max_rows: 25\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_FALSE(r.definitions[0].enabled);
  EXPECT_EQ(r.definitions[0].max_rows, 25u);
  LoadResult bad =
      LoadOne(BASE "    enabled: maybe\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n");
  EXPECT_NE(AllErrors(bad).find("enabled must be true or false"), std::string::npos) << AllErrors(bad);
}

TEST(Definition, RowsBeforeLimitMeansTheSqlLimitsItselfAndNeedsMaxRows) {
  LoadResult r = LoadOne(BASE
                         "    max_rows: 10\n    sql: SELECT 1 AS v, 3 AS total LIMIT $1\n"
                         "    columns: {v: {gauge: pg_x, help: h}, total: rows_before_limit}\n");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_TRUE(r.definitions[0].LimitsItself());
  EXPECT_EQ(r.definitions[0].FindColumn("total")->usage, ColumnUsage::RowsBeforeLimit);

  LoadResult plain =
      LoadOne(BASE "    max_rows: 10\n    sql: SELECT 1 AS v\n    columns: {v: {gauge: pg_x, help: h}}\n");
  ASSERT_TRUE(plain.ok()) << AllErrors(plain);
  EXPECT_FALSE(plain.definitions[0].LimitsItself());

  LoadResult no_max = LoadOne(BASE
                              "    sql: SELECT 1 AS v, 3 AS total LIMIT $1\n"
                              "    columns: {v: {gauge: pg_x, help: h}, total: rows_before_limit}\n");
  EXPECT_NE(AllErrors(no_max).find("test.yaml:5:"), std::string::npos) << AllErrors(no_max);
  EXPECT_NE(AllErrors(no_max).find("needs max_rows"), std::string::npos) << AllErrors(no_max);

  LoadResult two = LoadOne(BASE
                           "    max_rows: 10\n    sql: SELECT 1 AS v, 3 AS a, 3 AS b LIMIT $1\n"
                           "    columns: {v: {gauge: pg_x, help: h}, a: rows_before_limit, b: rows_before_limit}\n");
  EXPECT_NE(AllErrors(two).find("only one column can be rows_before_limit"), std::string::npos) << AllErrors(two);
}

// Only PostgreSQL 15 runs here, so version coverage is checked on the
// definitions themselves: for every major 12..18 at most one variant applies,
// and a collector that starts later (pg_stat_io from 16) has no gap after its start.
TEST(Definition, EmbeddedSetLoadsAndCoversPostgres12To18) {
  LoadResult r = LoadDefinitions(EmbeddedDefinitions());
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_FALSE(r.definitions.empty());
  for (const Definition& d : r.definitions) {
    if (d.target != TargetKind::Postgres) continue;  // PgBouncer versions: tests/unit/pgbouncer_test.cc
    bool started = false;
    for (int major = 12; major <= 18; ++major) {
      int hits = 0;
      for (const Variant& v : d.variants) {
        // The first and last minor of a major agree: range boundaries fall between majors.
        bool first = major * 10000 >= v.min_version && major * 10000 < v.max_version;
        bool last = major * 10000 + 9999 >= v.min_version && major * 10000 + 9999 < v.max_version;
        EXPECT_EQ(first, last) << d.name << ": a variant boundary falls inside PostgreSQL " << major;
        hits += first ? 1 : 0;
      }
      EXPECT_LE(hits, 1) << d.name << " on PostgreSQL " << major;
      if (hits == 1) started = true;
      else EXPECT_FALSE(started) << d.name << " has no variant for PostgreSQL " << major << " after an earlier one";
    }
    EXPECT_TRUE(started) << d.name << " has no variant for any of PostgreSQL 12..18";
  }
}

TEST(Reference, CommittedMetricReferenceIsCurrent) {
  LoadResult r = LoadDefinitions(EmbeddedDefinitions());
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  std::ifstream in(std::string(PGPULSE_SOURCE_DIR) + "/queries/METRICS.md");
  std::stringstream committed;
  committed << in.rdbuf();
  EXPECT_TRUE(committed.str() == RenderReference(r.definitions, {agent::BackrestSource(), agent::BackupFilesSource(),
                                                                 agent::sources::LogsSource()}))
      << "queries/METRICS.md is stale: run ./build/pgpulse reference > queries/METRICS.md";
}

TEST(Reference, VersionSpans) {
  Definition d;
  d.variants = {Variant{0, 1'000'000, "x"}};
  EXPECT_EQ(VersionSpan(d), "all");
  d.variants = {Variant{160000, 1'000'000, "x"}};
  EXPECT_EQ(VersionSpan(d), "16+");
  d.variants = {Variant{0, 140000, "x"}, Variant{140000, 170000, "y"}};
  EXPECT_EQ(VersionSpan(d), "12-16");
}

TEST(Duration, ParsesPrometheusStyle) {
  EXPECT_EQ(ParseDuration("500ms"), Millis(500));
  EXPECT_EQ(ParseDuration("1m30s"), Millis(90000));
  EXPECT_EQ(ParseDuration("2h"), Millis(7200000));
  EXPECT_EQ(ParseDuration("0"), Millis(0));
  EXPECT_FALSE(ParseDuration(""));
  EXPECT_FALSE(ParseDuration("10"));
  EXPECT_FALSE(ParseDuration("5 s"));
  EXPECT_FALSE(ParseDuration("-5s"));
  EXPECT_FALSE(ParseDuration("3w"));
  EXPECT_EQ(FormatDuration(Millis(90500)), "1m30s500ms");
}

}  // namespace
}  // namespace pgpulse::collectors
