// PrometheusServer::ReloadRules, which the backup alerts test uses to lower a threshold mid-test: new rules are in
// effect when it returns; an invalid file fails it with Prometheus's error and leaves the old rules loaded.

#include <gtest/gtest.h>

#include <string>

#include "tests/harness/agent_process.h"
#include "tests/harness/prometheus_server.h"

namespace pgpulse::testing {
namespace {

std::string Rules(const std::string& alert, const std::string& expr) {
  return "groups:\n  - name: reload\n    rules:\n      - alert: " + alert + "\n        expr: " + expr + "\n";
}

TEST(PrometheusReloadTest, ReloadRulesAppliesNewRulesAndKeepsTheOldOnesOnAnInvalidFile) {
  PrometheusServer::Options options;
  options.rule_files.push_back(WriteTempFile("reload_rules.yml", Rules("Before", "vector(0) > 1")));
  auto prometheus = PrometheusServer::Start(options);

  ASSERT_TRUE(prometheus->ReloadRules({WriteTempFile("reload_rules_new.yml", Rules("After", "vector(1) > 0"))}));
  // The new rule is loaded: its alert fires on the next evaluation (no `for`).
  EXPECT_TRUE(prometheus->WaitForAlert("After", "firing", 5));

  const ::testing::AssertionResult bad =
      prometheus->ReloadRules({WriteTempFile("reload_rules_bad.yml", Rules("Broken", "sum("))});
  EXPECT_FALSE(bad);
  EXPECT_NE(std::string(bad.message()).find("could not reload its rules"), std::string::npos) << bad.message();
  EXPECT_EQ(prometheus->RuleGroupsLoaded(), 1);
  EXPECT_TRUE(prometheus->WaitForAlert("After", "firing", 5)) << "the old rules did not stay";

  EXPECT_FALSE(prometheus->ReloadRules({}));  // not as many files as Start had
}

}  // namespace
}  // namespace pgpulse::testing
