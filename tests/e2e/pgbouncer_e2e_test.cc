// The shipped PgBouncer alerts end to end: a real pgbouncer in front of a throwaway PostgreSQL, an agent scraping
// its admin console, a real Prometheus with the shipped rules (only `for` durations and the wait threshold
// shortened) and a real Alertmanager posting to the test's webhook. Healthy first: no PgBouncer alert. Then six
// clients on a pool of two exhaust it (and fill most of max_client_conn), then PgBouncer stops.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/alert_rules.h"
#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/alertmanager_server.h"
#include "tests/harness/pgbouncer_server.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/prometheus_server.h"
#include "tests/harness/webhook_receiver.h"

namespace pgpulse::testing {
namespace {

const char kThresholds[] = R"(exporter_down_for: 3s
collector_failing_for: 3s
pgbouncer_down_for: 2s
pgbouncer_pool_max_wait_seconds: 1
pgbouncer_pool_exhausted_for: 2s
pgbouncer_client_connections_for: 2s
)";

// Clients that each run pg_sleep through PgBouncer until destroyed; the destructor ends their backends.
class SleepingClients {
 public:
  SleepingClients(const PostgresServer& backend, const std::string& pooled_dsn, int count) : backend_(backend) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, pooled_dsn] {
        PGconn* c = PQconnectdb((pooled_dsn + " connect_timeout=10 application_name=e2e_sleeper").c_str());
        if (PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, "SELECT pg_sleep(60)"));
        PQfinish(c);
        ++done_;
      });
    }
  }
  ~SleepingClients() {
    // Ending the two running sleeps hands their server connections to the next two waiters; repeat until all ended.
    const auto start = Clock::now();
    while (done_ < static_cast<int>(threads_.size()) && SecondsSince(start) < 30) {
      try {
        backend_.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'");
      } catch (const std::exception& e) {
        std::cerr << "cannot end the sleeping clients: " << e.what() << std::endl;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (auto& t : threads_) t.join();
  }

 private:
  const PostgresServer& backend_;
  std::vector<std::thread> threads_;
  std::atomic<int> done_{0};
};

std::string PgBouncerAlerts(const PrometheusServer& prometheus) {
  std::string out;
  for (const auto& a : prometheus.Alerts()) {
    if (a.alertname.rfind("PgBouncer", 0) == 0 || a.alertname.rfind("Pgpulse", 0) == 0)
      out += "\n  " + a.state + " " + a.alertname;
  }
  return out;
}

bool Fired(const WebhookReceiver& webhook, const std::string& alertname,
           const std::map<std::string, std::string>& want) {
  for (const auto& a : webhook.Received()) {
    if (a.alertname != alertname || a.status != "firing") continue;
    bool match = true;
    for (const auto& [k, v] : want) {
      auto it = a.labels.find(k);
      match = match && it != a.labels.end() && it->second == v;
    }
    if (match) return true;
  }
  return false;
}

TEST(PgBouncerE2eTest, PoolExhaustedClientsNearLimitAndDownReachTheWebhook) {
  const auto start = Clock::now();
  const std::string rule_file = GenerateRules("pgbouncer_e2e_rules", kThresholds);
  auto webhook = WebhookReceiver::Start();
  auto alertmanager = AlertmanagerServer::Start(webhook->url());
  auto pg = PostgresServer::Start();
  // 6 sleepers + the agent's console connection = 7 of 8 client connections (0.875 > the shipped 0.8).
  auto bouncer = PgBouncerServer::Start(*pg, {2, "session", 8});
  auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", bouncer->admin_dsn()}});
  const std::string instance = "127.0.0.1:" + std::to_string(agent->port());

  PrometheusServer::Options options;
  options.targets.push_back({"pgpulse-pgbouncer", instance});
  options.rule_files.push_back(rule_file);
  options.alertmanager_url = alertmanager->url();
  auto prometheus = PrometheusServer::Start(options);
  ASSERT_TRUE(prometheus->WaitForTargetsUp(15));

  // Healthy: longer than every shortened `for`, and nothing about PgBouncer or the agent is pending or firing.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  EXPECT_EQ(PgBouncerAlerts(*prometheus), "") << "alerts on a healthy PgBouncer";
  EXPECT_TRUE(webhook->Received().empty());
  ASSERT_FALSE(prometheus->Query("pgbouncer_up{job=\"pgpulse-pgbouncer\"} == 1").empty());

  {
    SleepingClients sleepers(*pg, bouncer->pooled_dsn(), 6);
    const auto caused = Clock::now();
    const std::map<std::string, std::string> pool = {
        {"job", "pgpulse-pgbouncer"}, {"instance", instance}, {"database", "postgres"}, {"user", "postgres"}};
    while (!Fired(*webhook, "PgBouncerPoolExhausted", pool) && SecondsSince(caused) < 40)
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_TRUE(Fired(*webhook, "PgBouncerPoolExhausted", pool))
        << "PgBouncerPoolExhausted did not reach the webhook in 40 s; Prometheus: " << PgBouncerAlerts(*prometheus);
    std::cout << "[ pgbouncer] PgBouncerPoolExhausted at the webhook " << SecondsSince(caused) << " s after six clients"
              << std::endl;
    const std::map<std::string, std::string> target = {{"job", "pgpulse-pgbouncer"}, {"instance", instance}};
    while (!Fired(*webhook, "PgBouncerClientConnectionsNearLimit", target) && SecondsSince(caused) < 40)
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_TRUE(Fired(*webhook, "PgBouncerClientConnectionsNearLimit", target))
        << "PgBouncerClientConnectionsNearLimit did not reach the webhook; Prometheus: "
        << PgBouncerAlerts(*prometheus);
    EXPECT_FALSE(Fired(*webhook, "PgBouncerDown", {})) << "a busy PgBouncer is not a down one";
  }

  bouncer->Stop();
  EXPECT_TRUE(webhook->WaitFor("PgBouncerDown", "firing", 30));
  EXPECT_TRUE(Fired(*webhook, "PgBouncerDown", {{"job", "pgpulse-pgbouncer"}, {"instance", instance}}));
  std::cout << "[ pgbouncer] total " << SecondsSince(start) << " s" << std::endl;
}

}  // namespace
}  // namespace pgpulse::testing
