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

// pg_stat_statements left at an old version after a major upgrade: its view has that version's columns.
std::vector<Definition> ExtensionVersionDefs() {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: statements
    help: h
    requires: {extension: pg_stat_statements}
    extension_versions: {"1.7": 120000, "1.8": 130000, "1.10": 150000}
    variants:
      - {max_version: 130000, sql: SELECT 12 AS v}
      - {min_version: 130000, max_version: 150000, sql: SELECT 13 AS v}
      - {min_version: 150000, sql: SELECT 15 AS v}
    columns: {v: {gauge: pg_v, help: h}}
  - name: info
    help: h
    requires: {extension: pg_stat_statements}
    extension_versions: {"1.7": 120000, "1.8": 130000, "1.10": 150000}
    variants:
      - {min_version: 140000, sql: SELECT 14 AS v}
    columns: {v: {gauge: pg_w, help: h}}
)"}});
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0]);
  return r.definitions;
}

std::string SqlOf(const Plan& p, const std::string& name) {
  for (const auto& c : p.run) {
    if (c.definition->name == name) return c.variant->sql;
  }
  return "";
}

std::string SkipReason(const Plan& p, const std::string& name) {
  for (const auto& s : p.skipped) {
    if (s.definition->name == name) return s.reason;
  }
  return "";
}

TEST(Plan, InstalledExtensionVersionChoosesTheVariant) {
  auto defs = ExtensionVersionDefs();
  ServerFacts f;
  f.version_num = 180001;
  f.extensions = {"pg_stat_statements"};
  f.extension_versions = {{"pg_stat_statements", "1.8"}};
  Plan p = MakePlan(defs, f);
  EXPECT_EQ(SqlOf(p, "statements"), "SELECT 13 AS v");
  EXPECT_EQ(SkipReason(p, "info"),
            "no SQL variant for server_version_num 130000 (read as of extension pg_stat_statements 1.8)");

  f.extension_versions = {{"pg_stat_statements", "1.9"}};  // between entries: the highest not above it
  EXPECT_EQ(SqlOf(MakePlan(defs, f), "statements"), "SELECT 13 AS v");
  f.extension_versions = {{"pg_stat_statements", "1.12"}};  // newer than every entry: the server decides
  EXPECT_EQ(SqlOf(MakePlan(defs, f), "statements"), "SELECT 15 AS v");
  EXPECT_EQ(SqlOf(MakePlan(defs, f), "info"), "SELECT 14 AS v");

  f.version_num = 120005;  // an extension newer than the server's own cannot give columns the server lacks
  EXPECT_EQ(SqlOf(MakePlan(defs, f), "statements"), "SELECT 12 AS v");

  f.version_num = 180001;
  f.extension_versions = {{"pg_stat_statements", "1.6"}};
  EXPECT_EQ(SkipReason(MakePlan(defs, f), "statements"),
            "extension pg_stat_statements version '1.6' is older than any this collector reads; "
            "ALTER EXTENSION pg_stat_statements UPDATE");
}

TEST(Plan, ExtensionVersionsNeedARequiredExtensionAndServerScope) {
  LoadResult r = LoadDefinitions({Source{"t.yaml", R"(collectors:
  - name: a
    help: h
    extension_versions: {"1.8": 130000}
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_a, help: h}}
  - name: b
    help: h
    scope: database
    requires: {extension: pgstattuple}
    extension_versions: {"1.8": 130000}
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_b, help: h}}
  - name: c
    help: h
    requires: {extension: pgstattuple}
    extension_versions: {"one": 130000}
    sql: SELECT 1 AS v
    columns: {v: {gauge: pg_c, help: h}}
)"}});
  std::string all;
  for (const auto& e : r.errors) all += e + "\n";
  EXPECT_NE(all.find("collector 'a'.extension_versions: needs requires.extension"), std::string::npos) << all;
  EXPECT_NE(all.find("collector 'b'.extension_versions: only for scope server"), std::string::npos) << all;
  EXPECT_NE(all.find("collector 'c'.extension_versions: 'one' is not an extension version like 1.8"), std::string::npos)
      << all;
}

TEST(Plan, ExtensionVersionNumbers) {
  EXPECT_EQ(ExtensionVersionNum("1.8"), 108);
  EXPECT_EQ(ExtensionVersionNum("1.10"), 110);
  EXPECT_EQ(ExtensionVersionNum("1.12"), 112);
  EXPECT_EQ(ExtensionVersionNum(""), -1);
  EXPECT_EQ(ExtensionVersionNum("1.8beta"), -1);
}

}  // namespace
}  // namespace pgpulse::collectors
