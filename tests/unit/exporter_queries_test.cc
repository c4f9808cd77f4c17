// postgres_exporter's queries.yaml translated into definitions: names as it makes them, version
// ranges as variants, and a file:line:column error for whatever cannot be expressed.
#include "agent/exporter_queries.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "agent/metrics_profile.h"
#include "collectors/definition.h"
#include "tests/unit/helpers.h"

namespace pgpulse::agent {
namespace {

using pgpulse::testing::Joined;

const char* kQueries = R"(pg_replication:
  query: "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE 1 END AS lag;"
  master: true
  cache_seconds: 30
  metrics:
    - lag:
        usage: "GAUGE"
        description: "Replication lag behind master in seconds"

pg_tables:
  query: SELECT current_database() datname, relname, n_tup_ins, 'x' AS junk, 'on' AS state FROM pg_stat_user_tables
  runonserver: ">=9.6.0 <13.0.0 || >=15.0.0"
  metrics:
    - datname: {usage: "LABEL", description: "Database"}
    - relname: {usage: "LABEL", description: "Table"}
    - n_tup_ins: {usage: "COUNTER", description: "Rows inserted"}
    - junk: {usage: "DISCARD"}
    - state:
        usage: "MAPPEDMETRIC"
        description: "State as a number"
        mapping: {"on": 1, "off": 0}
)";

const collectors::Definition& Find(const collectors::LoadResult& r, const std::string& name) {
  for (const auto& d : r.definitions)
    if (d.name == name) return d;
  throw std::runtime_error("no definition " + name);
}

TEST(ExporterQueries, TranslatesToDefinitionsWithPostgresExportersNames) {
  std::vector<std::string> errors;
  auto t = TranslateQueries(kQueries, "queries.yaml", errors);
  ASSERT_TRUE(t) << Joined(errors);
  EXPECT_EQ(t->sha256.size(), 64u);
  auto loaded = LoadProfileDefinitions(MetricsProfile::PostgresExporter, {}, &*t);
  ASSERT_TRUE(loaded.ok()) << Joined(loaded.errors) << "\n" << t->source.text;

  const auto& repl = Find(loaded, "pe_queries__pg_replication");
  EXPECT_EQ(repl.scope, collectors::Scope::Server) << "master: true";
  EXPECT_EQ(repl.ttl, collectors::Millis(30'000));
  EXPECT_EQ(repl.origin, "queries.yaml:1:1") << "errors at run time point at the user's file";
  ASSERT_NE(repl.FindColumn("lag"), nullptr);
  ASSERT_NE(repl.FindColumn("lag__value"), nullptr) << "NULL is served as NaN, through a copy of the column";
  EXPECT_EQ(repl.FindColumn("lag__value")->metric, "pg_replication_lag");
  EXPECT_EQ(repl.FindColumn("lag__value")->usage, collectors::ColumnUsage::Gauge);
  EXPECT_EQ(repl.FindColumn("lag__value")->help, "Replication lag behind master in seconds");
  ASSERT_NE(repl.FindColumn("server"), nullptr) << "postgres_exporter labels custom queries with server";
  ASSERT_EQ(repl.variants.size(), 1u);
  EXPECT_EQ(repl.variants[0].sql.find(";"), std::string::npos) << "the trailing ; is dropped to wrap the query";

  const auto& tables = Find(loaded, "pe_queries__pg_tables");
  EXPECT_EQ(tables.scope, collectors::Scope::Database) << "not master: every discovered database";
  EXPECT_EQ(tables.FindColumn("datname")->usage, collectors::ColumnUsage::Ignore) << "the agent sets datname";
  EXPECT_EQ(tables.FindColumn("relname")->usage, collectors::ColumnUsage::Label);
  EXPECT_EQ(tables.FindColumn("n_tup_ins__value")->usage, collectors::ColumnUsage::Counter);
  EXPECT_EQ(tables.FindColumn("n_tup_ins__value")->metric, "pg_tables_n_tup_ins") << "no _total, as postgres_exporter";
  EXPECT_EQ(tables.FindColumn("junk")->usage, collectors::ColumnUsage::Ignore);
  ASSERT_NE(tables.FindColumn("state__value"), nullptr);
  EXPECT_EQ(tables.FindColumn("state__value")->metric, "pg_tables_state");
  EXPECT_NE(tables.variants[0].sql.find("WHEN 'on' THEN 1"), std::string::npos) << tables.variants[0].sql;
  ASSERT_EQ(tables.variants.size(), 2u);
  EXPECT_EQ(tables.variants[0].min_version, 90600);
  EXPECT_EQ(tables.variants[0].max_version, 130000);
  EXPECT_EQ(tables.variants[1].min_version, 150000);
  EXPECT_EQ(tables.variants[1].max_version, 1'000'000);
}

TEST(ExporterQueries, TheQueryFileWinsOverTheProfilesCollector) {
  std::vector<std::string> errors;
  auto t = TranslateQueries(R"(pg_stat_user_tables:
  query: SELECT relname, n_live_tup FROM pg_stat_user_tables
  metrics:
    - relname: {usage: LABEL}
    - n_live_tup: {usage: GAUGE, description: Live rows}
)",
                            "q.yaml", errors);
  ASSERT_TRUE(t) << Joined(errors);
  auto loaded = LoadProfileDefinitions(MetricsProfile::PostgresExporter, {}, &*t);
  ASSERT_TRUE(loaded.ok()) << Joined(loaded.errors);
  int producers = 0;
  for (const auto& d : loaded.definitions)
    for (const auto& c : d.columns)
      if (collectors::IsMetricUsage(c.usage) && c.metric == "pg_stat_user_tables_n_live_tup") ++producers;
  EXPECT_EQ(producers, 1);
  EXPECT_EQ(Find(loaded, "pe_queries__pg_stat_user_tables").FindColumn("n_live_tup__value")->metric,
            "pg_stat_user_tables_n_live_tup");
}

TEST(ExporterQueries, WhatCannotBeExpressedIsAnErrorWithItsPosition) {
  std::vector<std::string> errors;
  auto t = TranslateQueries(R"(pg_a:
  query: SELECT 1 AS d
  metrics:
    - d: {usage: DURATION, description: A duration}
pg_b:
  query: SELECT 1 AS x
  master: yes please
  metrics:
    - x: {usage: gauge}
pg_c:
  query: SELECT 1 AS x
  runonserver: "!=10.0.0"
  timeout: 5
  metrics:
    - x: {usage: MAPPEDMETRIC}
pg_d:
  metrics: []
)",
                            "q.yaml", errors);
  EXPECT_FALSE(t);
  const std::string all = Joined(errors);
  for (const char* want :
       {"q.yaml:4:18: query 'pg_a' column 'd': usage DURATION (a Go duration text) cannot be translated",
        "q.yaml:7:11: query 'pg_b'.master",
        "q.yaml:9:18: query 'pg_b' column 'x': usage must be LABEL, GAUGE, COUNTER, MAPPEDMETRIC, HISTOGRAM",
        "q.yaml:12:16: query 'pg_c'.runonserver: operator '!='", "q.yaml:13:3: query 'pg_c': unknown key 'timeout'",
        "query 'pg_c' column 'x': MAPPEDMETRIC needs a 'mapping'",
        "q.yaml:17:3: query 'pg_d': missing required key 'query'"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
}

TEST(ExporterQueries, VersionRanges) {
  std::string error;
  auto r = ParseVersionRange(">=9.4.0 <10.0.0", error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(*r, (std::vector<std::pair<int, int>>{{90400, 100000}}));
  r = ParseVersionRange(">10.0.0 <=14.2.0 || =9.6.3", error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(*r, (std::vector<std::pair<int, int>>{{100001, 140003}, {90603, 90604}}));
  EXPECT_FALSE(ParseVersionRange(">=13 <12", error));
  EXPECT_NE(error.find("matches no version"), std::string::npos);
  EXPECT_FALSE(ParseVersionRange(">=x", error));
  EXPECT_FALSE(ParseVersionRange("", error));
}

TEST(ExporterQueries, DebiansExampleFileTranslates) {
  const char* path = "/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << path << " not installed (Debian package prometheus-postgres-exporter)";
  std::vector<std::string> errors;
  auto t = TranslateQueriesFile(path, errors);
  ASSERT_TRUE(t) << Joined(errors);
  auto loaded = LoadProfileDefinitions(MetricsProfile::PostgresExporter, {}, &*t);
  ASSERT_TRUE(loaded.ok()) << Joined(loaded.errors);
  for (const char* name :
       {"pe_queries__pg_replication", "pe_queries__pg_postmaster", "pe_queries__pg_stat_user_tables",
        "pe_queries__pg_statio_user_tables", "pe_queries__pg_stat_statements", "pe_queries__pg_process_idle"})
    EXPECT_NO_THROW(Find(loaded, name)) << name;
  const auto& idle = Find(loaded, "pe_queries__pg_process_idle");
  ASSERT_NE(idle.FindColumn("seconds"), nullptr);
  EXPECT_EQ(idle.FindColumn("seconds")->usage, collectors::ColumnUsage::Histogram);
  EXPECT_EQ(idle.FindColumn("seconds")->metric, "pg_process_idle_seconds");
}

}  // namespace
}  // namespace pgpulse::agent
