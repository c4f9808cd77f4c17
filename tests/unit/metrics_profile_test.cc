// The metrics profile: which definition sets load, and the naming rules relaxed only for the
// postgres_exporter set (foreign_names), never for a user's files.
#include "agent/metrics_profile.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "agent/config.h"
#include "collectors/embedded.h"
#include "collectors/mapping.h"

namespace pgpulse::agent {
namespace {

using collectors::LoadDefinitions;
using collectors::Source;

const char* kForeign = R"(collectors:
  - name: pe_x
    help: Another exporter's names.
    sql: SELECT 'work_mem_bytes' AS metric, 1 AS commits, 2 AS value
    columns:
      metric: {name_suffix: pg_settings_}
      value: {gauge: pg_settings, help: A setting.}
      commits: ignore
  - name: pe_y
    help: A counter without _total, an untyped gauge.
    sql: SELECT 1 AS commits, 1 AS one
    columns:
      commits: {counter: pg_stat_database_xact_commit, help: Commits., unit: seconds}
      one: {untyped: pg_static, help: Version.}
)";

std::set<std::string> Metrics(const std::vector<collectors::Definition>& defs) {
  std::set<std::string> out;
  for (const auto& d : defs)
    for (const auto& c : d.columns)
      if (collectors::IsMetricUsage(c.usage)) out.insert(c.metric);
  return out;
}

TEST(MetricsProfile, ForeignNamesOnlyInAForeignSource) {
  EXPECT_TRUE(LoadDefinitions({Source{"pe.yaml", kForeign, true}}).ok());
  auto strict = LoadDefinitions({Source{"user.yaml", kForeign}});
  ASSERT_FALSE(strict.ok());
  std::string all;
  for (const auto& e : strict.errors) all += e + "\n";
  EXPECT_NE(all.find("user.yaml:"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown key 'name_suffix'"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown key 'untyped'"), std::string::npos) << all;
  EXPECT_NE(all.find("must end in _total"), std::string::npos) << all;
}

TEST(MetricsProfile, NameSuffixNamesOneFamilyPerRow) {
  auto loaded = LoadDefinitions({Source{"pe.yaml", kForeign, true}});
  ASSERT_TRUE(loaded.ok());
  const auto& def = loaded.definitions.at(0);
  std::string a = "work_mem_bytes", b = "port", v1 = "4096", v2 = "5432", z = "0";
  collectors::TableView t;
  t.columns = {"metric", "commits", "value"};
  t.rows = 2;
  t.cells = {{a.data(), a.size(), false}, {z.data(), z.size(), false}, {v1.data(), v1.size(), false},
             {b.data(), b.size(), false}, {z.data(), z.size(), false}, {v2.data(), v2.size(), false}};
  auto mapped = collectors::MapRows(def, t, {});
  ASSERT_TRUE(mapped.error.empty()) << mapped.error;
  ASSERT_EQ(mapped.families.size(), 2u);
  EXPECT_EQ(mapped.families[0].name, "pg_settings_work_mem_bytes");
  EXPECT_EQ(mapped.families[0].values.at(0), 4096);
  EXPECT_EQ(mapped.families[1].name, "pg_settings_port");
}

TEST(MetricsProfile, EachProfileLoadsItsSets) {
  auto pgpulse = LoadProfileDefinitions(MetricsProfile::Pgpulse, {});
  auto pe = LoadProfileDefinitions(MetricsProfile::PostgresExporter, {});
  auto both = LoadProfileDefinitions(MetricsProfile::Both, {});
  ASSERT_TRUE(pgpulse.ok() && pe.ok() && both.ok());
  EXPECT_TRUE(Metrics(pgpulse.definitions).count("pg_database_backends"));
  EXPECT_FALSE(Metrics(pgpulse.definitions).count("pg_locks_count"));
  EXPECT_TRUE(Metrics(pe.definitions).count("pg_locks_count"));
  EXPECT_FALSE(Metrics(pe.definitions).count("pg_database_backends"));
  EXPECT_TRUE(Metrics(both.definitions).count("pg_locks_count"));
  EXPECT_TRUE(Metrics(both.definitions).count("pg_database_backends"));
  // A name in both sets comes from one collector only.
  int size_producers = 0;
  for (const auto& d : both.definitions)
    for (const auto& c : d.columns)
      if (collectors::IsMetricUsage(c.usage) && c.metric == "pg_database_size_bytes") ++size_producers;
  EXPECT_EQ(size_producers, 1);
}

TEST(MetricsProfile, ConfigKeyIsCheckedAndRead) {
  EXPECT_EQ(LoadConfigText("metrics_profile: both\n", "c.yaml", "", "").config.metrics_profile, MetricsProfile::Both);
  EXPECT_EQ(LoadConfigText("", "c.yaml", "", "").config.metrics_profile, MetricsProfile::Pgpulse);
  auto bad = LoadConfigText("metrics_profile: postgres-exporter\n", "c.yaml", "", "");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0],
            "c.yaml:1:18: metrics_profile: must be pgpulse, postgres_exporter or both, got 'postgres-exporter'");
}

}  // namespace
}  // namespace pgpulse::agent
