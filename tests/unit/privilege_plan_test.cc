// `requires: {privilege: ...}`: collectors the connecting role may not run are skipped with the reason.

#include <gtest/gtest.h>

#include "collectors/definition.h"
#include "collectors/plan.h"

namespace pgpulse::collectors {
namespace {

LoadResult Load(const std::string& privilege) {
  return LoadDefinitions(
      {Source{"p.yaml", "collectors:\n  - name: needs\n    help: h\n    requires: {privilege: " + privilege +
                            "}\n    sql: SELECT 1 AS n\n    columns:\n      n: {gauge: "
                            "pg_n, help: N.}\n"}});
}

TEST(PrivilegePlan, MissingPrivilegeSkipsWithTheGrantToRun) {
  LoadResult r = Load("pg_read_all_settings");
  ASSERT_TRUE(r.ok()) << r.errors[0];
  ServerFacts facts;
  facts.version_num = 150000;
  facts.user = "app";
  facts.privileges = {"pg_read_all_stats"};
  Plan plan = MakePlan(r.definitions, facts);
  ASSERT_EQ(plan.skipped.size(), 1u);
  EXPECT_EQ(plan.skipped[0].reason,
            "needs the privileges of pg_read_all_settings (included in pg_monitor), which role app lacks: "
            "GRANT pg_monitor TO app");
  facts.privileges.insert("pg_read_all_settings");
  plan = MakePlan(r.definitions, facts);
  EXPECT_EQ(plan.run.size(), 1u);
  EXPECT_TRUE(plan.skipped.empty());
}

TEST(PrivilegePlan, OnlyPredefinedRolesMayBeRequired) {
  LoadResult r = Load("admin");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0],
            "p.yaml:4:27: collector 'needs'.requires.privilege: must name a predefined role such as "
            "pg_monitor or pg_read_all_settings, got 'admin'");
}

}  // namespace
}  // namespace pgpulse::collectors
