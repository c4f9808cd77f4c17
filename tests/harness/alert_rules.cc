#include "tests/harness/alert_rules.h"

#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <stdexcept>

#include "tests/harness/agent_process.h"

namespace pgpulse::testing {

std::string GenerateRules(const std::string& name, const std::string& thresholds) {
  const std::string file = WriteTempFile(name + "_thresholds.yaml", thresholds);
  const std::string out = (std::filesystem::path(file).parent_path() / name).string();
  const CommandResult generated = RunCommand(
      {"bash", std::string(PGPULSE_SOURCE_DIR) + "/alerts/generate.sh", "--thresholds", file, "--out", out}, {}, 30);
  if (generated.exit_status != 0) {
    throw std::runtime_error("alerts/generate.sh failed (" + std::to_string(generated.exit_status) +
                             "): " + generated.output);
  }
  return out + "/pgpulse-rules.yml";
}

std::string DescribeAlerts(const std::vector<PrometheusServer::Alert>& alerts) {
  std::string out;
  for (const auto& a : alerts) out += "\n  " + a.state + " " + FormatLabels(a.labels);
  return out.empty() ? "none" : out;
}

std::string DescribeAlerts(const std::vector<WebhookReceiver::Alert>& alerts) {
  std::string out;
  for (const auto& a : alerts) out += "\n  " + a.status + " " + FormatLabels(a.labels);
  return out.empty() ? "none" : out;
}

void ExpectAnnotationsRendered(const WebhookReceiver::Alert& alert) {
  for (const auto& [key, text] : alert.annotations) {
    EXPECT_EQ(text.find("expanding template"), std::string::npos) << alert.alertname << " " << key << ": " << text;
    EXPECT_EQ(text.find("<no value>"), std::string::npos) << alert.alertname << " " << key << ": " << text;
  }
  std::string anchor = alert.alertname;
  for (char& c : anchor) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string runbook = alert.annotations.count("runbook_url") ? alert.annotations.at("runbook_url") : "";
  EXPECT_NE(runbook.find("#" + anchor), std::string::npos) << alert.alertname << " runbook_url: " << runbook;
}

std::string DescribeQuery(const PrometheusServer& prometheus, const std::string& promql) {
  std::string out = promql + " =";
  try {
    const auto samples = prometheus.Query(promql);
    if (samples.empty()) out += " (empty)";
    for (const auto& s : samples) out += "\n  " + FormatLabels(s.labels) + " " + std::to_string(s.value);
  } catch (const std::exception& e) {
    out += std::string(" error: ") + e.what();
  }
  return out;
}

}  // namespace pgpulse::testing
