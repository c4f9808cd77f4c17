#pragma once
// The running agent: the current configuration snapshot (config, definitions,
// targets), its reload, and what the HTTP endpoints serve.
//
// Threads: HTTP threads read the snapshot through runtime(); Reload() (main
// thread, on SIGHUP) builds a new one and swaps it in atomically. In-flight
// scrapes keep the snapshot they started with alive.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/self_metrics.h"
#include "agent/target.h"

namespace pgpulse::agent {

struct AgentOptions {
  std::string config_file;       // --config.file; "" = none
  std::string data_source_name;  // DATA_SOURCE_NAME
  std::string password_file;     // DATA_SOURCE_PASS_FILE
};

struct Runtime {
  Config config;
  std::shared_ptr<const Definitions> definitions;
  std::vector<std::shared_ptr<Target>> targets;
};

// Builds a runtime from a config. Targets of `previous` whose connection
// settings are unchanged are kept (with their connections). On any error
// returns nullptr and fills `errors`.
std::shared_ptr<const Runtime> BuildRuntime(const ConfigResult& loaded, const Runtime* previous,
                                            SelfMetrics& metrics, std::vector<std::string>& errors);

class Agent {
 public:
  Agent(AgentOptions options, SelfMetrics& metrics);

  // Loads config and definitions; installs them only if there is no error.
  // Returns the errors (empty on success).
  std::vector<std::string> Reload();

  std::shared_ptr<const Runtime> runtime() const;

  // Collects every target within the deadline derived from Prometheus's
  // scrape timeout (<= 0 when the header was absent) and renders the text.
  std::string RenderMetrics(double prometheus_timeout_seconds);
  // One configured target's metrics (the multi-target /probe pattern);
  // nullopt when no target has that name.
  std::optional<std::string> RenderProbe(const std::string& target, double prometheus_timeout_seconds);
  std::string RenderLanding(const std::string& telemetry_path) const;
  // True when every target answers within a short deadline.
  bool Ready(std::string& detail);

 private:
  Clock::time_point Deadline(const Runtime& rt, double prometheus_timeout_seconds) const;
  std::string Render(const Runtime& rt, const std::vector<std::shared_ptr<Target>>& targets,
                     Clock::time_point deadline, bool include_self);

  AgentOptions options_;
  SelfMetrics& metrics_;
  std::shared_ptr<const Runtime> runtime_;  // std::atomic_load / std::atomic_store only
};

}  // namespace pgpulse::agent
