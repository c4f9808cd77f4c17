// The shipped alerts on errors from the server's log end to end: a throwaway PostgreSQL writing jsonlog, an agent
// reading it, a real Prometheus with the shipped rules (window, counts and `for` shortened via alerts/generate.sh
// --thresholds) and a real Alertmanager posting to the test's webhook. Healthy first: no log alert while the
// counters are there. Then failed logins (PostgreSQLAuthenticationFailuresSpike) and statement timeouts
// (PostgreSQLStatementTimeoutsSpike) made for real must reach the webhook; no disk full error ever fires.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/alert_rules.h"
#include "tests/harness/alertmanager_server.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/prometheus_server.h"
#include "tests/harness/webhook_receiver.h"

namespace pgpulse::testing {
namespace {

// A 30 s window; more than 3 failed logins or 2 statement timeouts in it fire at once.
const char kThresholds[] = R"(exporter_down_for: 2s
collector_failing_for: 2s
log_errors_window_seconds: 30
log_errors_for: 0s
log_authentication_failures: 3
log_statement_timeouts: 2
)";

const std::set<std::string> kLogAlerts = {"PostgreSQLAuthenticationFailuresSpike", "PostgreSQLStatementTimeoutsSpike",
                                          "PostgreSQLDiskFullErrors"};

std::string ActiveAlerts(const PrometheusServer& prometheus) {
  std::string out;
  for (const auto& a : prometheus.Alerts()) {
    if (kLogAlerts.count(a.alertname)) out += "\n  " + a.state + " " + FormatLabels(a.labels);
  }
  return out;
}

TEST(LogAlertsE2eTest, AuthenticationFailuresAndStatementTimeoutsReachTheWebhookAndNothingWhileHealthy) {
  const std::string rules = GenerateRules("log_e2e", kThresholds);
  auto pg = PostgresServer::Start({"logging_collector = on", "log_destination = 'jsonlog'", "lc_messages = 'C'"});
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg->dsn()}});
  const std::string instance = "127.0.0.1:" + std::to_string(agent->port());
  auto webhook = WebhookReceiver::Start();
  auto alertmanager = AlertmanagerServer::Start(webhook->url());
  PrometheusServer::Options options;
  options.targets.push_back({"pgpulse-logs", instance});
  options.rule_files.push_back(rules);
  options.alertmanager_url = alertmanager->url();
  auto prometheus = PrometheusServer::Start(options);
  ASSERT_TRUE(prometheus->WaitForTargetsUp(15));

  // Healthy: silence must come from counters that are there, not from missing data.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_EQ(prometheus->QueryOne("pg_log_visible{job=\"pgpulse-logs\",format=\"jsonlog\"}"), 1);
  EXPECT_EQ(prometheus->QueryOne("pg_log_authentication_failures_total{job=\"pgpulse-logs\"}"), 0);
  EXPECT_EQ(prometheus->QueryOne("pg_log_statement_timeouts_total{job=\"pgpulse-logs\"}"), 0);
  EXPECT_EQ(ActiveAlerts(*prometheus), "") << "log alerts on a healthy server";

  const Labels where = {{"job", "pgpulse-logs"}, {"instance", instance}};
  const auto logins = Clock::now();
  const std::string bad = "host=127.0.0.1 port=" + std::to_string(pg->port()) +
                          " dbname=postgres user=nosuchrole sslmode=disable gssencmode=disable";
  for (int i = 0; i < 6; ++i) EXPECT_THROW(pqxx::connection{bad}, pqxx::broken_connection);
  const WebhookReceiver::Alert auth =
      webhook->WaitForAlert("PostgreSQLAuthenticationFailuresSpike", "firing", where, 30);
  ASSERT_FALSE(auth.alertname.empty()) << "PostgreSQLAuthenticationFailuresSpike did not reach the webhook; Prometheus:"
                                       << ActiveAlerts(*prometheus)
                                       << "\nwebhook:" << DescribeAlerts(webhook->Received());
  std::cout << "[ logs     ] PostgreSQLAuthenticationFailuresSpike at the webhook " << SecondsSince(logins)
            << " s after the failed logins" << std::endl;
  EXPECT_EQ(auth.labels.at("severity"), "warning");
  ExpectAnnotationsRendered(auth);

  const auto timeouts = Clock::now();
  for (int i = 0; i < 4; ++i)
    EXPECT_THROW(pg->Exec("SET statement_timeout = '20ms'; SELECT pg_sleep(5)"), pqxx::sql_error);
  const WebhookReceiver::Alert slow = webhook->WaitForAlert("PostgreSQLStatementTimeoutsSpike", "firing", where, 30);
  ASSERT_FALSE(slow.alertname.empty()) << "PostgreSQLStatementTimeoutsSpike did not reach the webhook; Prometheus:"
                                       << ActiveAlerts(*prometheus)
                                       << "\nwebhook:" << DescribeAlerts(webhook->Received());
  std::cout << "[ logs     ] PostgreSQLStatementTimeoutsSpike at the webhook " << SecondsSince(timeouts)
            << " s after the timeouts" << std::endl;
  ExpectAnnotationsRendered(slow);
  for (const auto& a : webhook->Received())
    EXPECT_NE(a.alertname, "PostgreSQLDiskFullErrors") << "no disk is full: " << FormatLabels(a.labels);
}

}  // namespace
}  // namespace pgpulse::testing
