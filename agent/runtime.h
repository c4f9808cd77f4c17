#pragma once
// The running agent: the current configuration snapshot (config, definitions,
// targets), its reload, and what the HTTP endpoints serve.
//
// Threads: HTTP threads read the snapshot through runtime(); Reload() (main
// thread, on SIGHUP) builds a new one and swaps it in atomically. In-flight
// scrapes keep the snapshot they started with alive.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/config.h"
#include "agent/exporter_compat.h"
#include "agent/self_metrics.h"
#include "agent/target.h"
#include "collectors/exposition.h"

namespace pgpulse::agent {

struct AgentOptions {
  std::string config_file;  // --config.file; "" = none
  // DATA_SOURCE_*: the targets when the config file names none; errors reading them.
  DataSources data_sources;
  std::vector<std::string> environment_errors;
  ExporterFlags exporter;  // postgres_exporter's flags
  std::optional<MetricsProfile> metrics_profile =
      std::nullopt;  // --metrics.profile; unset = the config's metrics_profile
};

// The config file with the command line and environment laid over it (targets from DATA_SOURCE_*
// when the file names none, --metrics.profile, postgres_exporter's flags), as every reload reads it.
ConfigResult LoadAgentConfig(const AgentOptions& options);

struct ResolvedAuthModule {
  std::string user;
  std::string password;  // from password_file; never logged
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<AllowedTarget> allowed_targets;
};

struct Runtime {
  Config config;
  std::map<std::string, ResolvedAuthModule> auth_modules;
  std::shared_ptr<const Definitions> definitions;
  std::vector<std::shared_ptr<Target>> targets;
};

// Builds a runtime from a config. Targets of `previous` whose connection
// settings are unchanged are kept (with their connections). On any error
// returns nullptr and fills `errors`.
std::shared_ptr<const Runtime> BuildRuntime(const ConfigResult& loaded, const Runtime* previous, SelfMetrics& metrics,
                                            std::vector<std::string>& errors);

class Agent {
 public:
  Agent(AgentOptions options, SelfMetrics& metrics);
  ~Agent();  // stops the retirer, which waits for the evicted targets' workers
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Loads config and definitions; installs them only if there is no error,
  // `refused` included (errors found outside the config file, e.g. a changed
  // web config). Returns the errors (empty on success).
  std::vector<std::string> Reload(const std::vector<std::string>& refused = {});

  std::shared_ptr<const Runtime> runtime() const;

  // The last reload's outcome (the first load included), for the landing page.
  struct ReloadRecord {
    std::chrono::system_clock::time_point at;
    bool ok = false;
    std::vector<std::string> errors;
  };
  ReloadRecord LastReload() const;

  // Collects every target within the deadline derived from Prometheus's
  // scrape timeout (<= 0 when the header was absent) and writes the text into
  // `sink` as it is rendered (pieces of about 64 KiB).
  void RenderMetrics(double prometheus_timeout_seconds, const collectors::ExpositionSink& sink);
  // /probe: a configured target by name, or, with an auth module, a server
  // address "host[:port][/dbname]" whose credentials come from the module.
  struct ProbeResult {
    int status;        // 200 (the text went to the sink), or 400/403/404 with `body` saying why
    std::string body;  // empty with 200
  };
  ProbeResult RenderProbe(const std::string& target, const std::string& auth_module, double prometheus_timeout_seconds,
                          const collectors::ExpositionSink& sink);
  std::string RenderLanding(const std::string& telemetry_path) const;
  // True when every target answers within a short deadline.
  bool Ready(std::string& detail);

 private:
  Clock::time_point Deadline(const Runtime& rt, double prometheus_timeout_seconds) const;
  void Render(const Runtime& rt, const std::vector<std::shared_ptr<Target>>& targets, Clock::time_point deadline,
              bool include_self, const collectors::ExpositionSink& sink);

  // nullptr with `error` when the module or address is bad, and `forbidden` when the
  // address is outside the module's allowed_targets.
  std::shared_ptr<Target> AdhocTarget(const Runtime& rt, const std::string& address, const std::string& module,
                                      std::string& error, bool& forbidden);

  AgentOptions options_;
  SelfMetrics& metrics_;
  struct Adhoc {
    std::shared_ptr<Target> target;
    Clock::time_point last_used;
  };
  std::mutex adhoc_mu_;
  std::map<std::string, Adhoc> adhoc_;  // guarded by adhoc_mu_; emptied by a successful reload
  // Evicted ad-hoc targets: destroying one waits for its worker, which may be stuck on a hung
  // server, so the retirer thread does it, never a request, and then drops their self series.
  void Retire(std::shared_ptr<Target> target);  // caller holds adhoc_mu_
  void RetireLoop();
  std::vector<std::shared_ptr<Target>> retired_;  // guarded by adhoc_mu_
  std::condition_variable retire_cv_;
  bool stopping_ = false;  // guarded by adhoc_mu_
  std::thread retirer_;
  std::atomic<uint64_t> scrapes_{0};        // pg_exporter_scrapes_total (postgres_exporter profile)
  std::shared_ptr<const Runtime> runtime_;  // std::atomic_load / std::atomic_store only
  mutable std::mutex reload_mu_;            // one Reload at a time; guards last_reload_
  ReloadRecord last_reload_;
};

}  // namespace pgpulse::agent
