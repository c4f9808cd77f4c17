// A real Prometheus (the Debian `prometheus` binary) for end-to-end tests: scraping agents, evaluating rules,
// sending alerts to an Alertmanager, and answering PromQL through its HTTP API.
//
// Not thread-safe: create and drive each object from one thread. The child gets SIGKILL when the thread that
// started it exits (PR_SET_PDEATHSIG), so start it from the test's own thread, not a helper thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pgpulse::testing {
namespace detail {
class Json;
class ServerProcess;
}  // namespace detail

class PrometheusServer {
 public:
  // One scrape_config. Job names must be unique: Prometheus refuses a config that repeats one.
  struct ScrapeTarget {
    ScrapeTarget(std::string job_name, std::string host_port)
        : job(std::move(job_name)), address(std::move(host_port)) {}

    std::string job;
    std::string address;  // "host:port"
    std::string metrics_path = "/metrics";
    // URL query parameters sent with every scrape, e.g. {"target", "..."} for a /probe endpoint.
    std::map<std::string, std::string> params;
    // Prometheus durations ("1s", "500ms"). An empty timeout leaves it to Prometheus: min(10s, interval).
    std::string scrape_interval = "1s";
    std::string scrape_timeout;
  };

  struct Options {
    std::vector<ScrapeTarget> targets;
    // Rule files, copied into the server's dir; Prometheus exits at start (and Start throws) if one is invalid.
    std::vector<std::string> rule_files;
    // "http://host:port" (a path after it becomes the path prefix); empty: alerts go nowhere.
    std::string alertmanager_url;
    std::string evaluation_interval = "1s";
    // YAML lines added under `global:` as they are (indented for you), e.g. "external_labels: {env: e2e}".
    std::string extra_global;
    // More command-line flags, after the harness's own (so a repeated flag wins).
    std::vector<std::string> extra_args;
  };

  // A sample of an instant vector; a scalar result is one sample without labels.
  struct Sample {
    std::map<std::string, std::string> labels;  // including __name__ when the result keeps it
    double value = 0;
  };

  struct Target {
    std::string job;
    std::string scrape_url;
    std::string health;  // "up", "down" or "unknown" (not scraped yet)
    std::string last_error;
  };

  // An active alert as Prometheus sees it: pending (waiting out its `for`) or firing.
  struct Alert {
    std::string alertname;
    std::string state;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> annotations;
  };

  // Writes prometheus.yml into a fresh /tmp dir, starts Prometheus on a free loopback port with its TSDB in that
  // dir and --rules.alert.resend-delay=1s, and waits up to 30 s for /-/ready (which follows the first config and
  // rule load). Throws std::runtime_error with the log if Prometheus exits first or never gets ready.
  static std::unique_ptr<PrometheusServer> Start(const Options& options);

  // Stops Prometheus (SIGTERM, then SIGKILL after 10 s) and removes its dir; prints the log's tail first if the
  // current test failed.
  ~PrometheusServer();
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  int port() const;
  pid_t pid() const;
  // Holds prometheus.yml, rules/, data/ (the TSDB) and prometheus.log.
  const std::string& dir() const;
  // "http://127.0.0.1:PORT" + path; path starts with '/'.
  std::string url(const std::string& path = "/") const;
  std::string Log() const;

  // Evaluates promql now (GET /api/v1/query). Throws std::runtime_error on a transport error, on a PromQL error
  // (with Prometheus's message) and on result types other than vector and scalar.
  std::vector<Sample> Query(const std::string& promql) const;
  // The value of promql when it gives exactly one sample, else -1.
  double QueryOne(const std::string& promql) const;

  // Active targets from /api/v1/targets.
  std::vector<Target> Targets() const;
  // Polls until there is at least one active target and every one is up; on timeout, fails with each target's
  // health and last error. Allow 10 s after Start: Prometheus passes discovered targets on in 5 s batches, so the
  // first scrape comes about 5 s after start.
  ::testing::AssertionResult WaitForTargetsUp(double timeout_seconds) const;

  // Pending and firing alerts from /api/v1/alerts.
  std::vector<Alert> Alerts() const;
  // Polls until an alert named alertname is in state ("pending" or "firing"); on timeout, fails listing the
  // alerts seen last. A short-lived state can be missed between two polls (every 100 ms).
  ::testing::AssertionResult WaitForAlert(const std::string& alertname, const std::string& state,
                                          double timeout_seconds) const;

  // Number of rule groups in /api/v1/rules.
  int RuleGroupsLoaded() const;

  // Replaces the rule files Start copied (as many, in the same order) with rule_files and reloads Prometheus
  // (SIGHUP); succeeds once Prometheus reports the reload done, fails with its log if the reload failed (an invalid
  // rule file: the old rules stay) or did not happen within timeout_seconds.
  ::testing::AssertionResult ReloadRules(const std::vector<std::string>& rule_files, double timeout_seconds = 10);

 private:
  explicit PrometheusServer(std::unique_ptr<detail::ServerProcess> process);
  // Reads GET path as Prometheus's {"status": "success", "data": ...} envelope; returns data, throws on errors.
  detail::Json ApiData(const std::string& path) const;

  std::unique_ptr<detail::ServerProcess> process_;
  std::vector<std::string> rule_paths_;  // the copies prometheus.yml names
};

// Shared by the e2e servers (prometheus_server.cc, alertmanager_server.cc, webhook_receiver.cc); tests use the
// classes above.
namespace detail {

// Just enough JSON to read Prometheus's API, Alertmanager's API and webhook payloads.
class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  // Throws std::runtime_error naming the byte offset if text is not exactly one JSON value (RFC 8259).
  static Json Parse(const std::string& text);

  Type type() const { return type_; }
  bool boolean() const { return boolean_; }
  double number() const { return number_; }
  // The string, or "" if this is not one.
  const std::string& str() const { return string_; }
  // The elements of an array, the member values of an object; empty otherwise. Keep the value alive while
  // iterating: `for (auto& x : Json::Parse(s).items())` iterates a destroyed temporary.
  const std::vector<Json>& items() const { return items_; }
  // Member key of an object, or a null value if this is not an object or has no such member.
  const Json& operator[](const std::string& key) const;
  // The string-valued members of an object (labels, annotations); other members are left out.
  std::map<std::string, std::string> StringMap() const;

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool boolean_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Json> items_;
  std::vector<std::string> keys_;  // for an object, keys_[i] names items_[i]
};

// A server binary run from a fresh /tmp/pgpulse-NAME-XXXXXX dir with stdout+stderr in NAME.log there.
// The destructor stops it and removes the dir, printing the log's tail first if the current test failed.
class ServerProcess {
 public:
  explicit ServerProcess(std::string name);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts argv_for(port) on a free loopback port and polls GET http://127.0.0.1:PORT + ready_path until it
  // answers 200. Tries another port if the first was taken in the meantime. Throws std::runtime_error with the
  // log if the process exits or is not ready within timeout_seconds.
  void Launch(const std::function<std::vector<std::string>(int port)>& argv_for, const std::string& ready_path,
              double timeout_seconds);

  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url(const std::string& path) const;
  std::string Log() const;
  bool Running();
  // SIGTERM, up to 10 s grace, then SIGKILL; returns the exit status (128 + signal if killed). Idempotent.
  int Stop();

 private:
  // False if the port was taken and last is false (Launch tries again); throws on any other failure.
  bool TryLaunch(const std::vector<std::string>& argv, int port, const std::string& ready_path, double timeout_seconds,
                 bool last);

  std::string name_;  // "prometheus": the log is prometheus.log
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  bool reaped_ = true;
};

// s as a double-quoted YAML (and JSON) string.
std::string QuoteYaml(const std::string& s);

}  // namespace detail
}  // namespace pgpulse::testing
