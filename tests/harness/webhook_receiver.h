// An in-process HTTP server (CivetWeb) that records the notifications Alertmanager's webhook receiver POSTs.
//
// Thread-safe: CivetWeb's worker threads record payloads while the test thread reads them; one mutex guards the
// records and is never held while doing I/O.
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct mg_connection;
struct mg_context;

namespace pgpulse::testing {

class WebhookReceiver {
 public:
  // One alert of one notification: {"alerts": [{"status", "labels", "annotations"}, ...]}.
  struct Alert {
    std::string alertname;
    std::string status;  // "firing" or "resolved"
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> annotations;
  };

  // Listens on a free loopback port. Throws std::runtime_error if CivetWeb cannot start.
  static std::unique_ptr<WebhookReceiver> Start();
  // Stops the server; no handler runs after it returns.
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:PORT/webhook": where Alertmanager should POST. Any path is accepted.
  std::string url() const;

  // Every alert of every notification so far, in arrival order.
  std::vector<Alert> Received() const;
  // Every request body POSTed so far, as received (also ones that were not valid JSON, which got a 400).
  std::vector<std::string> Payloads() const;
  // Waits until an alert named alertname arrived with status ("firing" or "resolved"); on timeout, fails
  // listing what arrived.
  ::testing::AssertionResult WaitFor(const std::string& alertname, const std::string& status,
                                     double timeout_seconds) const;
  // Waits up to timeout_seconds for a notification of alertname with status whose labels include `want`;
  // returns a copy of it (alertname empty if none came).
  Alert WaitForAlert(const std::string& alertname, const std::string& status,
                     const std::map<std::string, std::string>& want, double timeout_seconds) const;

 private:
  WebhookReceiver() = default;
  static int Handle(mg_connection* conn, void* self);
  // Returns the HTTP status it answered with.
  int Record(mg_connection* conn);

  mg_context* ctx_ = nullptr;
  int port_ = 0;

  mutable std::mutex mutex_;
  mutable std::condition_variable arrived_;
  std::vector<Alert> alerts_;          // guarded by mutex_
  std::vector<std::string> payloads_;  // guarded by mutex_
};

// Prometheus labels by name.
using Labels = std::map<std::string, std::string>;

// "{a="1", b="2"}": alert labels for test messages.
std::string FormatLabels(const std::map<std::string, std::string>& labels);
// True when every label of `want` has that value in `labels`.
bool LabelsInclude(const std::map<std::string, std::string>& labels, const std::map<std::string, std::string>& want);

}  // namespace pgpulse::testing
