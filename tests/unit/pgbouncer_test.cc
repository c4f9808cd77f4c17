// PgBouncer targets: the pgbouncer definition rules, the mapping features they
// use (pivot, add_to, info), planning by target kind, config and version parsing.

#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "agent/config.h"
#include "agent/dsn.h"
#include "agent/target.h"
#include "collectors/console.h"
#include "collectors/definition.h"
#include "collectors/embedded.h"
#include "collectors/mapping.h"
#include "collectors/plan.h"
#include "tests/harness/table_view.h"

namespace pgpulse {
namespace {

using collectors::Definition;
using collectors::LoadDefinitions;
using collectors::LoadResult;
using collectors::Source;
using collectors::TargetKind;
using testing::Table;

std::string AllErrors(const LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e + "\n";
  return s;
}

LoadResult Load(const std::string& yaml) { return LoadDefinitions({Source{"b.yaml", yaml}}); }

std::string Samples(const collectors::MappedResult& m) { return testing::Samples(m.families); }

TEST(PgBouncerDefinition, LoadsWithTargetAndShow) {
  LoadResult r = Load(R"(collectors:
  - name: pools
    help: h
    target: pgbouncer
    variants:
      - min_version: 10800
        sql: "  show pools;  "
    columns:
      cl_waiting: {gauge: pgbouncer_waiting, help: Waiting.}
)");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.definitions[0].target, TargetKind::PgBouncer);
}

struct BadCase {
  const char* name;
  const char* yaml;
  const char* expected;  // substring of the one error, with its position
};

class PgBouncerDefinitionRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(PgBouncerDefinitionRejects, WithPositionAndReason) {
  LoadResult r = Load(GetParam().yaml);
  ASSERT_FALSE(r.ok()) << GetParam().name << " was accepted";
  EXPECT_TRUE(r.definitions.empty()) << "nothing is half-loaded";
  EXPECT_NE(AllErrors(r).find(GetParam().expected), std::string::npos) << AllErrors(r);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PgBouncerDefinitionRejects,
    ::testing::Values(BadCase{"UnknownTarget", R"(collectors:
  - {name: a, help: h, target: mysql, sql: SHOW POOLS, columns: {x: {gauge: a_x, help: h}}}
)",
                              "b.yaml:2:32: collector 'a'.target: must be 'postgres' or 'pgbouncer', got 'mysql'"},
                      BadCase{"SelectOnConsole", R"(collectors:
  - name: a
    help: h
    target: pgbouncer
    sql: SELECT 1
    columns: {x: {gauge: a_x, help: h}}
)",
                              "b.yaml:5:10: collector 'a': a pgbouncer collector's sql must be one 'SHOW <command>'"},
                      BadCase{"TwoCommands", R"(collectors:
  - name: a
    help: h
    target: pgbouncer
    variants:
      - sql: SHOW POOLS; SHOW STATS
    columns: {x: {gauge: a_x, help: h}}
)",
                              "b.yaml:6:14: collector 'a': a pgbouncer collector's sql must be one 'SHOW <command>'"},
                      BadCase{"DatabaseScope", R"(collectors:
  - {name: a, help: h, target: pgbouncer, scope: database, sql: SHOW POOLS, columns: {x: {gauge: a_x, help: h}}}
)",
                              "b.yaml:2:50: collector 'a'.scope: a pgbouncer collector runs once per console"},
                      BadCase{"RequiresExtension", R"(collectors:
  - name: a
    help: h
    target: pgbouncer
    requires: {extension: pg_stat_statements}
    sql: SHOW POOLS
    columns: {x: {gauge: a_x, help: h}}
)",
                              "b.yaml:5:15: collector 'a'.requires: extensions and roles are PostgreSQL's"},
                      BadCase{
                          "AddToAnIgnoredColumn", R"(collectors:
  - name: a
    help: h
    sql: SELECT 1
    columns:
      x: ignore
      y: {add_to: x}
      z: {gauge: a_z, help: h}
)",
                          "b.yaml:7:10: collector 'a': column 'y' adds to 'x', which is not a gauge or counter column"},
                      BadCase{"AddToWithHelp", R"(collectors:
  - name: a
    help: h
    sql: SELECT 1
    columns:
      x: {gauge: a_x, help: h}
      y: {add_to: x, help: more}
)",
                              "b.yaml:7:10: column 'y': help and unit belong to the column it adds to"},
                      BadCase{"InfoWithoutInfoSuffix", R"(collectors:
  - name: a
    help: h
    sql: SELECT 1
    info: {gauge: a_mode, help: h}
    columns: {m: label}
)",
                              "b.yaml:5:11: collector 'a'.info: info metric 'a_mode' must end in _info"},
                      BadCase{"PivotWithoutValue", R"(collectors:
  - name: a
    help: h
    sql: SELECT 1
    pivot: {key: k}
    columns: {x: {gauge: a_x, help: h}}
)",
                              "b.yaml:5:12: collector 'a'.pivot: missing required key 'value'"},
                      BadCase{"PivotColumnDescribed", R"(collectors:
  - name: a
    help: h
    sql: SELECT 1
    pivot: {key: k, value: v}
    columns: {k: label, x: {gauge: a_x, help: h}}
)",
                              "collector 'a': column 'k' is a pivot column"}),
    [](const auto& info) { return std::string(info.param.name); });

Definition One(const std::string& yaml) {
  LoadResult r = Load(yaml);
  EXPECT_TRUE(r.ok()) << AllErrors(r);
  return r.ok() ? r.definitions.at(0) : Definition{};
}

TEST(PgBouncerMapping, AddToSumsSecondsAndMicroseconds) {
  Definition d = One(R"(collectors:
  - name: pools
    help: h
    sql: SELECT 1
    columns:
      database: label
      maxwait: {gauge: p_max_wait_seconds, unit: seconds, help: h}
      maxwait_us: {add_to: maxwait, scale: 0.000001}
)");
  Table t({"database", "maxwait", "maxwait_us"},
          {{"app", "3", "250000"}, {"other", "0", "0"}, {"nul", "1", std::nullopt}});
  auto m = collectors::MapRows(d, t.view, {});
  ASSERT_TRUE(m.error.empty()) << m.error;
  EXPECT_EQ(Samples(m),
            "p_max_wait_seconds{database=\"app\"} 3.25\n"
            "p_max_wait_seconds{database=\"other\"} 0\n"
            "p_max_wait_seconds{database=\"nul\"} 1\n");

  Table bad({"database", "maxwait", "maxwait_us"}, {{"app", "3", "soon"}});
  auto e = collectors::MapRows(d, bad.view, {});
  EXPECT_EQ(e.error, "column 'maxwait_us' has value 'soon' in row 1, which is not a number");
  EXPECT_TRUE(e.families.empty());
}

const char* kConfigYaml = R"(collectors:
  - name: config
    help: h
    sql: SELECT 1
    pivot: {key: key, value: value}
    columns:
      max_client_conn: {gauge: b_max_client_connections, help: h}
      default_pool_size: {gauge: b_default_pool_size, help: h}
)";

TEST(PgBouncerMapping, PivotPicksRowsByKey) {
  Definition d = One(kConfigYaml);
  Table t({"key", "value", "default", "changeable"}, {{"admin_users", "postgres", "", "yes"},
                                                      {"default_pool_size", "2", "20", "yes"},
                                                      {"max_client_conn", "100", "100", "yes"},
                                                      {"pool_mode", "session", "session", "yes"}});
  auto m = collectors::MapRows(d, t.view, {{"target", "b"}});
  ASSERT_TRUE(m.error.empty()) << m.error;
  // Families come in the order of the rows the pivot found.
  EXPECT_EQ(Samples(m),
            "b_default_pool_size{target=\"b\"} 2\n"
            "b_max_client_connections{target=\"b\"} 100\n");
}

TEST(PgBouncerMapping, PivotSaysWhichKeyIsMissingOrRepeated) {
  Definition d = One(kConfigYaml);
  Table missing({"key", "value"}, {{"max_client_conn", "100"}});
  EXPECT_EQ(collectors::MapRows(d, missing.view, {}).error, "pivot: no row has key 'default_pool_size'");
  Table twice({"key", "value"}, {{"max_client_conn", "100"}, {"default_pool_size", "2"}, {"max_client_conn", "5"}});
  EXPECT_EQ(collectors::MapRows(d, twice.view, {}).error, "pivot: key 'max_client_conn' appears in more than one row");
  Table no_key({"list", "items"}, {{"pools", "1"}});
  EXPECT_EQ(collectors::MapRows(d, no_key.view, {}).error,
            "pivot: the query did not return the key column 'key' and the value column 'value'");
}

TEST(PgBouncerMapping, IgnoreOtherColumnsAndInfo) {
  const std::string yaml = R"(collectors:
  - name: mode
    help: h
    sql: SELECT 1
    IGNORE
    columns:
      database: label
      pool_mode: label
    info: {gauge: b_pool_mode_info, help: h}
)";
  std::string strict = yaml, lenient = yaml;
  strict.replace(strict.find("IGNORE"), 6, "ignore_other_columns: false");
  lenient.replace(lenient.find("IGNORE"), 6, "ignore_other_columns: true");
  Table t({"database", "cl_active", "pool_mode"}, {{"app", "4", "transaction"}, {"app", "4", "transaction"}});
  auto m = collectors::MapRows(One(lenient), t.view, {});
  ASSERT_TRUE(m.error.empty()) << m.error;
  EXPECT_EQ(Samples(m), "b_pool_mode_info{database=\"app\",pool_mode=\"transaction\"} 1\n");
  EXPECT_EQ(m.dropped_duplicates, 1u);
  EXPECT_EQ(collectors::MapRows(One(strict), t.view, {}).error,
            "query returned column 'cl_active' which 'columns' does not describe");
}

TEST(PgBouncerPlan, EachKindRunsOnlyItsOwnDefinitions) {
  LoadResult r = LoadDefinitions(collectors::EmbeddedDefinitions());
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  collectors::ServerFacts bouncer;
  bouncer.kind = TargetKind::PgBouncer;
  bouncer.version_num = 11800;
  collectors::Plan on_bouncer = collectors::MakePlan(r.definitions, bouncer);
  ASSERT_FALSE(on_bouncer.run.empty());
  EXPECT_TRUE(on_bouncer.skipped.empty())
      << on_bouncer.skipped[0].definition->name << ": " << on_bouncer.skipped[0].reason;
  for (const auto& p : on_bouncer.run) EXPECT_EQ(p.definition->target, TargetKind::PgBouncer) << p.definition->name;

  collectors::ServerFacts postgres;
  postgres.version_num = 150000;
  collectors::Plan on_postgres = collectors::MakePlan(r.definitions, postgres);
  for (const auto& p : on_postgres.run) EXPECT_EQ(p.definition->target, TargetKind::Postgres) << p.definition->name;
  for (const auto& s : on_postgres.skipped) EXPECT_EQ(s.definition->target, TargetKind::Postgres) << s.definition->name;

  // 1.17 predates the split cancel-request columns: that collector alone is skipped, saying why.
  bouncer.version_num = 11700;
  collectors::Plan old = collectors::MakePlan(r.definitions, bouncer);
  ASSERT_EQ(old.skipped.size(), 1u);
  EXPECT_EQ(old.skipped[0].definition->name, "pgbouncer_pool_cancel_requests");
  EXPECT_EQ(old.skipped[0].reason, "no SQL variant for server_version_num 11700");
}

TEST(PgBouncerVersion, ParsesShowVersion) {
  auto v = collectors::ParsePgBouncerVersion("PgBouncer 1.18.0");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->first, 11800);
  EXPECT_EQ(v->second, "1.18.0");
  v = collectors::ParsePgBouncerVersion("PgBouncer version 1.9.0");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->first, 10900);
  v = collectors::ParsePgBouncerVersion("PgBouncer 1.23");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->first, 12300);
  EXPECT_FALSE(collectors::ParsePgBouncerVersion("PgBouncer"));
  EXPECT_FALSE(collectors::ParsePgBouncerVersion("1.180.0"));
}

agent::ConnectionSpec Spec(const std::string& dsn) {
  std::string error;
  auto spec = agent::ParseDsn(dsn, "", collectors::Millis(1000), error);
  EXPECT_TRUE(spec) << error;
  return spec ? *spec : agent::ConnectionSpec{};
}

TEST(PgBouncerTarget, KindFromTypeOrTheDsnsDatabase) {
  agent::TargetConfig tc;
  EXPECT_EQ(agent::ResolveTargetKind(tc, Spec("host=h dbname=pgbouncer")), TargetKind::PgBouncer);
  EXPECT_EQ(agent::ResolveTargetKind(tc, Spec("postgresql://u@h:6432/pgbouncer")), TargetKind::PgBouncer);
  EXPECT_EQ(agent::ResolveTargetKind(tc, Spec("host=h dbname=app")), TargetKind::Postgres);
  tc.type = "postgres";  // a PostgreSQL database that happens to be named pgbouncer
  EXPECT_EQ(agent::ResolveTargetKind(tc, Spec("host=h dbname=pgbouncer")), TargetKind::Postgres);
  tc.type = "pgbouncer";
  EXPECT_EQ(agent::ResolveTargetKind(tc, Spec("host=h dbname=stats")), TargetKind::PgBouncer);
}

TEST(PgBouncerConfig, TypeIsCheckedWithPosition) {
  auto ok =
      agent::LoadConfigText("targets:\n  - {name: b, dsn: 'dbname=pgbouncer', type: pgbouncer}\n", "c.yml", "", "");
  ASSERT_TRUE(ok.ok()) << ok.errors[0];
  EXPECT_EQ(ok.config.targets[0].type, "pgbouncer");

  auto bad = agent::LoadConfigText("targets:\n  - name: b\n    type: bouncer\n", "c.yml", "", "");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0], "c.yml:3:11: target 'b'.type must be 'postgres' or 'pgbouncer', got 'bouncer'");

  auto discover = agent::LoadConfigText("targets:\n  - name: b\n    type: pgbouncer\n    databases: {discover: true}\n",
                                        "c.yml", "", "");
  ASSERT_EQ(discover.errors.size(), 1u);
  EXPECT_EQ(discover.errors[0],
            "c.yml:4:16: target 'b': databases (discovery) applies to PostgreSQL targets, not to a pgbouncer console");
}

TEST(PgBouncerDefinition, EmbeddedSetCoversPgBouncer118) {
  LoadResult r = LoadDefinitions(collectors::EmbeddedDefinitions());
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  int count = 0;
  for (const Definition& d : r.definitions) {
    if (d.target != TargetKind::PgBouncer) continue;
    ++count;
    EXPECT_NE(d.VariantFor(11800), nullptr) << d.name << " has no variant for PgBouncer 1.18";
  }
  EXPECT_GE(count, 6);
}

}  // namespace
}  // namespace pgpulse
