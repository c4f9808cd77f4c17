#include "tests/harness/alertmanager_server.h"

#include <fstream>
#include <stdexcept>

#include "tests/harness/http_client.h"
#include "tests/harness/prometheus_server.h"

namespace pgpulse::testing {

using detail::Json;
using detail::QuoteYaml;

std::unique_ptr<AlertmanagerServer> AlertmanagerServer::Start(const std::string& webhook_url) {
  auto process = std::make_unique<detail::ServerProcess>("alertmanager");
  const std::string dir = process->dir();
  const std::string config = dir + "/alertmanager.yml";
  std::ofstream(config) << "route:\n"
                           "  receiver: webhook\n"
                           "  group_by: [alertname]\n"
                           "  group_wait: 1s\n"
                           "  group_interval: 1s\n"
                           "  repeat_interval: 1h\n"
                           "receivers:\n"
                           "  - name: webhook\n"
                           "    webhook_configs:\n"
                           "      - url: "
                        << QuoteYaml(webhook_url)
                        << "\n"
                           "        send_resolved: true\n";
  process->Launch(
      [&](int port) {
        // An empty cluster address turns clustering off; otherwise it binds 0.0.0.0:9094 and gossips.
        return std::vector<std::string>{
            "prometheus-alertmanager", "--config.file=" + config, "--storage.path=" + dir + "/data",
            "--web.listen-address=127.0.0.1:" + std::to_string(port), "--cluster.listen-address="};
      },
      "/-/ready", 30);
  return std::unique_ptr<AlertmanagerServer>(new AlertmanagerServer(std::move(process)));
}

AlertmanagerServer::AlertmanagerServer(std::unique_ptr<detail::ServerProcess> process) : process_(std::move(process)) {}

AlertmanagerServer::~AlertmanagerServer() = default;

int AlertmanagerServer::port() const { return process_->port(); }
pid_t AlertmanagerServer::pid() const { return process_->pid(); }
const std::string& AlertmanagerServer::dir() const { return process_->dir(); }
std::string AlertmanagerServer::url(const std::string& path) const { return process_->url(path); }
std::string AlertmanagerServer::Log() const { return process_->Log(); }

std::vector<AlertmanagerServer::Alert> AlertmanagerServer::Alerts() const {
  const HttpResponse response = HttpGet(url("/api/v2/alerts"), {}, 10);
  if (response.status != 200) {
    throw std::runtime_error("GET /api/v2/alerts answered " + std::to_string(response.status) + ": " +
                             response.body.substr(0, 500));
  }
  std::vector<Alert> alerts;
  const Json list = Json::Parse(response.body);
  for (const Json& a : list.items()) {
    alerts.push_back({a["labels"]["alertname"].str(), a["status"]["state"].str(), a["labels"].StringMap()});
  }
  return alerts;
}

}  // namespace pgpulse::testing
