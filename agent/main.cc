// pgpulse: PostgreSQL metrics for Prometheus.

#include <CLI/CLI.hpp>

#include <malloc.h>

#include <csignal>
#include <cstdlib>
#include <chrono>
#include <iostream>
#include <thread>

#include "agent/check.h"
#include "agent/http_server.h"
#include "agent/log.h"
#include "agent/pgbackrest.h"
#include "agent/runtime.h"
#include "collectors/embedded.h"
#include "collectors/reference.h"
#include "pgpulse_revision.h"

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pgpulse::agent;
  // glibc gives each allocating thread its own arena (up to 8 per core), and each arena keeps
  // its high-water mark: with a worker per target and 32 HTTP threads building scrape bodies,
  // RSS grew with how many threads had ever served a scrape. Two arenas are plenty here.
  mallopt(M_ARENA_MAX, 2);
  CLI::App app{"pgpulse: PostgreSQL metrics for Prometheus"};
  app.set_version_flag("--version", std::string("pgpulse ") + PGPULSE_VERSION + " (revision " + PGPULSE_REVISION + ")");
  std::string config_file, listen = ":9679", telemetry = "/metrics", level = "info", format = "logfmt";
  std::string web_config_file;
  app.add_option("--config.file", config_file, "Configuration file (YAML); optional");
  app.add_option("--web.config.file", web_config_file,
                 "TLS and basic auth for the endpoints (exporter-toolkit web config format); optional");
  app.add_option("--web.listen-address", listen, "Address to listen on (host:port, :port)")->capture_default_str();
  app.add_option("--web.telemetry-path", telemetry, "Path under which to expose metrics")->capture_default_str();
  int per_client = 8;
  app.add_option("--web.max-connections-per-client", per_client,
                 "Connections one client address may hold open at once (0 = no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  std::string profile;
  app.add_option("--metrics.profile", profile,
                 "Metric names to serve: pgpulse, postgres_exporter or both (default: the config's metrics_profile, "
                 "else pgpulse)")
      ->check(CLI::IsMember({"pgpulse", "postgres_exporter", "both"}));
  app.add_option("--log.level", level, "debug, info, warn, error")->capture_default_str();
  app.add_option("--log.format", format, "logfmt or json")->capture_default_str();
  app.fallthrough();  // `pgpulse check --config.file=...` reads naturally
  auto* check = app.add_subcommand("check", "Validate configuration and definitions, then exit");
  bool connect = false;
  check->add_flag("--connect", connect, "Also run every collector once against each target and print a table");
  auto* reference =
      app.add_subcommand("reference", "Print the metric reference (Markdown) of the built-in definitions");
  CLI11_PARSE(app, argc, argv);

  if (*reference) {
    auto defs = pgpulse::collectors::LoadDefinitions(pgpulse::collectors::EmbeddedDefinitions());
    for (const auto& e : defs.errors) std::cerr << "error: " << e << "\n";
    if (!defs.ok()) return 1;
    std::cout << pgpulse::collectors::RenderReference(defs.definitions, {BackrestSource()});
    return 0;
  }

  if (std::string e = InitLogging(level, format); !e.empty()) {
    std::cerr << e << "\n";
    return 2;
  }
  if (telemetry.empty() || telemetry[0] != '/' || telemetry == "/" || telemetry == "/healthz" ||
      telemetry == "/readyz") {
    std::cerr << "--web.telemetry-path: must start with '/' and differ from /, /healthz and /readyz\n";
    return 2;
  }
  AgentOptions options{config_file, Env("DATA_SOURCE_NAME"), Env("DATA_SOURCE_PASS_FILE"),
                       ParseMetricsProfile(profile)};
  if (*check) return RunCheck(options, connect, std::cout, std::cerr);

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  WebConfig web;
  if (!web_config_file.empty()) {
    WebConfigResult w = LoadWebConfig(web_config_file);
    for (const auto& e : w.errors) std::cerr << "error: " << e << "\n";
    if (!w.ok()) return 1;
    web = w.config;
  }

  SelfMetrics metrics(PGPULSE_VERSION, PGPULSE_REVISION);
  int status = 0;
  {
    Agent agent(options, metrics);
    auto errors = agent.Reload();
    if (!errors.empty()) {
      for (const auto& e : errors) std::cerr << "error: " << e << "\n";
      return 1;
    }
    HttpServer server(agent, telemetry, web, per_client);
    if (std::string e = server.Start(listen); !e.empty()) {
      LogError("cannot start", {{"error", e}});
      return 1;
    }
    LogInfo("listening", {{"address", listen},
                          {"telemetry_path", telemetry},
                          {"tls", web.tls ? "on" : "off"},
                          {"basic_auth", web.users.empty() ? "off" : "on"},
                          {"version", PGPULSE_VERSION}});
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        LogInfo("reloading on SIGHUP");
        agent.Reload(web_config_file.empty() ? std::vector<std::string>{}
                                             : WebConfigReloadErrors(web_config_file, web));
        continue;
      }
      LogInfo("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      // Stopping waits for each target's worker, which may be stuck in a connect or query to a
      // hung server for as long as connect_timeout or a collector's timeout: bound it.
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::seconds(5));
        LogWarn("not stopped within 5s (a server is not answering); exiting without waiting for it");
        std::_Exit(0);
      }).detach();
      server.Stop();
      break;
    }
  }
  LogInfo("stopped");
  return status;
}
