// A real Alertmanager (the Debian `prometheus-alertmanager` binary) for end-to-end tests, routing every alert to
// one webhook.
//
// Not thread-safe: create and drive each object from one thread. The child gets SIGKILL when the thread that
// started it exits (PR_SET_PDEATHSIG), so start it from the test's own thread, not a helper thread.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pgpulse::testing {
namespace detail {
class ServerProcess;
}  // namespace detail

class AlertmanagerServer {
 public:
  // An alert Alertmanager holds, from /api/v2/alerts.
  struct Alert {
    std::string alertname;
    std::string state;  // "active", "suppressed" or "unprocessed"
    std::map<std::string, std::string> labels;
  };

  // Starts Alertmanager on a free loopback port, clustering off, its storage in a fresh /tmp dir, with one route:
  // every alert, grouped by alertname, to webhook_url (group_wait and group_interval 1s, repeat_interval 1h,
  // send_resolved). Waits up to 30 s for /-/ready; throws std::runtime_error with the log if it exits first or
  // never gets ready.
  static std::unique_ptr<AlertmanagerServer> Start(const std::string& webhook_url);

  // Stops Alertmanager (SIGTERM, then SIGKILL after 10 s) and removes its dir; prints the log's tail first if the
  // current test failed.
  ~AlertmanagerServer();
  AlertmanagerServer(const AlertmanagerServer&) = delete;
  AlertmanagerServer& operator=(const AlertmanagerServer&) = delete;

  int port() const;
  pid_t pid() const;
  // Holds alertmanager.yml, data/ and alertmanager.log.
  const std::string& dir() const;
  // "http://127.0.0.1:PORT" + path; path starts with '/'. url() is what PrometheusServer::Options wants.
  std::string url(const std::string& path = "/") const;
  std::string Log() const;

  // Alerts received from Prometheus and not yet resolved. Throws std::runtime_error on errors.
  std::vector<Alert> Alerts() const;

 private:
  explicit AlertmanagerServer(std::unique_ptr<detail::ServerProcess> process);

  std::unique_ptr<detail::ServerProcess> process_;
};

}  // namespace pgpulse::testing
