// The end-to-end harness itself: a real Prometheus scraping the agent, evaluating rules and sending alerts
// through a real Alertmanager to an in-process webhook.

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/alertmanager_server.h"
#include "tests/harness/http_client.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/prometheus_server.h"
#include "tests/harness/webhook_receiver.h"

namespace pgpulse::testing {
namespace {

const char kRules[] = R"(groups:
  - name: e2e
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        labels: {severity: none}
        annotations: {summary: "Proves rules reach Alertmanager."}
      - alert: PgUpSeen
        expr: pg_up == 1
        for: 2s
        labels: {severity: info}
        annotations: {summary: "{{ $labels.instance }} answers."}
      - alert: PgDown
        expr: pg_up == 0
        for: 1s
        labels: {severity: critical}
        annotations: {summary: "{{ $labels.instance }} does not answer."}
)";

// Polls promql until its only sample's value equals want; returns the last value seen (NaN if none).
double WaitForValue(const PrometheusServer& prometheus, const std::string& promql, double want,
                    double timeout_seconds) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<long>(timeout_seconds * 1000));
  double last = std::nan("");
  while (true) {
    const auto samples = prometheus.Query(promql);
    if (samples.size() == 1) last = samples[0].value;
    if (last == want || Clock::now() >= deadline) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

bool ProcessGone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

TEST(E2eHarnessTest, WebhookReceiverRecordsAlertmanagerPayloads) {
  auto webhook = WebhookReceiver::Start();
  const std::string payload = R"({"version": "4", "status": "firing", "receiver": "webhook",
    "alerts": [
      {"status": "firing", "labels": {"alertname": "A", "instance": "db1:5432"},
       "annotations": {"summary": "quote \" backslash \\ tab \t \u00e9 \ud83d\ude00"}},
      {"status": "resolved", "labels": {"alertname": "B"}, "annotations": {}, "startsAt": "x", "value": 1.5e3}
    ]})";
  HttpResponse response = HttpRequest("POST", webhook->url(), {"Content-Type: application/json"}, payload, 5);
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_TRUE(webhook->WaitFor("A", "firing", 1));
  EXPECT_TRUE(webhook->WaitFor("B", "resolved", 1));
  const auto received = webhook->Received();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[0].labels.at("instance"), "db1:5432");
  EXPECT_EQ(received[0].annotations.at("summary"), "quote \" backslash \\ tab \t \xc3\xa9 \xf0\x9f\x98\x80");

  EXPECT_EQ(HttpRequest("POST", webhook->url(), {}, "{\"alerts\": [", 5).status, 400);
  EXPECT_EQ(HttpGet(webhook->url(), {}, 5).status, 405);
  EXPECT_EQ(webhook->Payloads().size(), 2u);

  const auto start = Clock::now();
  const ::testing::AssertionResult missing = webhook->WaitFor("A", "resolved", 0.2);
  EXPECT_FALSE(missing);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
  EXPECT_NE(std::string(missing.message()).find("A firing"), std::string::npos) << missing.message();
}

TEST(E2eHarnessTest, QueryReadsVectorsAndScalarsAndReportsPromqlErrors) {
  auto prometheus = PrometheusServer::Start({});
  const auto vector = prometheus->Query(R"(label_replace(vector(2.5), "who", "a \"quoted\" value", "", ""))");
  ASSERT_EQ(vector.size(), 1u);
  EXPECT_EQ(vector[0].value, 2.5);
  EXPECT_EQ(vector[0].labels.at("who"), "a \"quoted\" value");
  const auto scalar = prometheus->Query("scalar(vector(7)) + 1");
  ASSERT_EQ(scalar.size(), 1u);
  EXPECT_EQ(scalar[0].value, 8);
  EXPECT_TRUE(scalar[0].labels.empty());
  EXPECT_TRUE(std::isinf(prometheus->Query("vector(1) / 0")[0].value));
  EXPECT_TRUE(prometheus->Query("up").empty());
  EXPECT_EQ(prometheus->RuleGroupsLoaded(), 0);
  EXPECT_FALSE(prometheus->WaitForTargetsUp(0.2));
  try {
    prometheus->Query("sum(");
    ADD_FAILURE() << "a PromQL syntax error did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad_data"), std::string::npos) << e.what();
  }
}

TEST(E2eHarnessTest, StartFailsWithTheLogOnAnInvalidRuleFile) {
  PrometheusServer::Options options;
  options.rule_files.push_back(WriteTempFile("e2e_harness_bad_rules.yml",
                                             "groups:\n"
                                             "  - name: bad\n"
                                             "    rules:\n"
                                             "      - alert: Broken\n"
                                             "        expr: sum(\n"));
  try {
    PrometheusServer::Start(options);
    ADD_FAILURE() << "Prometheus started with an invalid rule file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exited with status 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("parse error"), std::string::npos) << e.what();
  }
}

TEST(E2eHarnessTest, ServersLeaveNoProcessOrDirectoryBehind) {
  pid_t prometheus_pid, alertmanager_pid;
  std::string prometheus_dir, alertmanager_dir;
  {
    auto webhook = WebhookReceiver::Start();
    auto alertmanager = AlertmanagerServer::Start(webhook->url());
    PrometheusServer::Options options;
    options.alertmanager_url = alertmanager->url();
    auto prometheus = PrometheusServer::Start(options);
    prometheus_pid = prometheus->pid();
    alertmanager_pid = alertmanager->pid();
    prometheus_dir = prometheus->dir();
    alertmanager_dir = alertmanager->dir();
    EXPECT_TRUE(std::filesystem::is_directory(prometheus_dir + "/data"));
    EXPECT_TRUE(std::filesystem::is_directory(alertmanager_dir + "/data"));
    EXPECT_TRUE(alertmanager->Alerts().empty());
  }
  EXPECT_TRUE(ProcessGone(prometheus_pid));
  EXPECT_TRUE(ProcessGone(alertmanager_pid));
  EXPECT_FALSE(std::filesystem::exists(prometheus_dir));
  EXPECT_FALSE(std::filesystem::exists(alertmanager_dir));
}

TEST(E2eHarnessTest, ScrapedMetricAlertsReachTheWebhookFiringAndResolved) {
  auto webhook = WebhookReceiver::Start();
  auto alertmanager = AlertmanagerServer::Start(webhook->url());
  auto pg = PostgresServer::Start();
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", pg->uri()}});

  PrometheusServer::Options options;
  const std::string agent_address = "127.0.0.1:" + std::to_string(agent->port());
  options.targets.push_back({"pgpulse", agent_address});
  options.rule_files.push_back(WriteTempFile("e2e_harness_rules.yml", kRules));
  options.alertmanager_url = alertmanager->url();
  auto prometheus = PrometheusServer::Start(options);
  EXPECT_EQ(prometheus->RuleGroupsLoaded(), 1);

  ASSERT_TRUE(prometheus->WaitForTargetsUp(10));
  EXPECT_EQ(WaitForValue(*prometheus, "pg_up", 1, 5), 1);
  const auto up = prometheus->Query("pg_up");
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].labels.at("job"), "pgpulse");
  EXPECT_EQ(up[0].labels.at("instance"), agent_address);

  ASSERT_TRUE(prometheus->WaitForAlert("PgUpSeen", "pending", 10));
  ASSERT_TRUE(prometheus->WaitForAlert("PgUpSeen", "firing", 10));
  ASSERT_TRUE(webhook->WaitFor("AlwaysFiring", "firing", 15));
  ASSERT_TRUE(webhook->WaitFor("PgUpSeen", "firing", 15));
  for (const auto& alert : webhook->Received()) {
    if (alert.alertname != "PgUpSeen") continue;
    EXPECT_EQ(alert.labels.at("severity"), "info");
    EXPECT_EQ(alert.labels.at("instance"), agent_address);
    EXPECT_EQ(alert.annotations.at("summary"), agent_address + " answers.");
  }

  // The agent stays up and says truthfully that the server is gone.
  pg->Stop();
  EXPECT_EQ(WaitForValue(*prometheus, "pg_up", 0, 10), 0);
  ASSERT_TRUE(prometheus->WaitForAlert("PgDown", "firing", 10));
  EXPECT_TRUE(webhook->WaitFor("PgDown", "firing", 15));
  EXPECT_TRUE(webhook->WaitFor("PgUpSeen", "resolved", 15));
}

}  // namespace
}  // namespace pgpulse::testing
