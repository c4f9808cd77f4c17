#include "collectors/plan.h"

#include <gtest/gtest.h>

namespace pgpulse::collectors {
namespace {

std::vector<Definition> Defs() {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: everywhere
    help: h
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_a, help: h}}
  - name: primary_only
    help: h
    requires: {role: primary}
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_b, help: h}}
  - name: replica_only
    help: h
    requires: {role: replica}
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_c, help: h}}
  - name: needs_ext
    help: h
    requires: {extension: pg_stat_statements}
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_d, help: h}}
  - name: new_only
    help: h
    variants:
      - {min_version: 160000, sql: SELECT 1 AS v}
    columns: {v: {gauge: pg_e, help: h}}
)"}});
  EXPECT_TRUE(r.ok());
  return r.definitions;
}

std::vector<std::string> Names(const Plan& p) {
  std::vector<std::string> n;
  for (const auto& c : p.run) n.push_back(c.definition->name);
  return n;
}

TEST(Plan, PrimaryWithoutExtensionOnOldVersion) {
  auto defs = Defs();
  ServerFacts f;
  f.version_num = 150004;
  Plan p = MakePlan(defs, f);
  EXPECT_EQ(Names(p), (std::vector<std::string>{"everywhere", "primary_only"}));
  ASSERT_EQ(p.skipped.size(), 3u);
  EXPECT_EQ(p.skipped[0].reason, "runs on a replica only; this server is a primary");
  EXPECT_EQ(p.skipped[1].reason, "extension pg_stat_statements is not installed");
  EXPECT_EQ(p.skipped[2].reason, "no SQL variant for server_version_num 150004");
}

TEST(Plan, ReplicaWithExtensionOnNewVersion) {
  auto defs = Defs();
  ServerFacts f;
  f.version_num = 170002;
  f.in_recovery = true;
  f.extensions = {"pg_stat_statements"};
  Plan p = MakePlan(defs, f);
  EXPECT_EQ(Names(p), (std::vector<std::string>{"everywhere", "replica_only", "needs_ext", "new_only"}));
  ASSERT_EQ(p.skipped.size(), 1u);
  EXPECT_EQ(p.skipped[0].definition->name, "primary_only");
}

}  // namespace
}  // namespace pgpulse::collectors
