// pgpulse: PostgreSQL metrics for Prometheus.

#include <CLI/CLI.hpp>

#include <malloc.h>

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <iostream>
#include <thread>

#include "agent/check.h"
#include "agent/http_server.h"
#include "agent/log.h"
#include "agent/sources/pgbackrest.h"
#include "agent/sources/logs.h"
#include "agent/runtime.h"
#include "agent/sources/dumps.h"
#include "collectors/embedded.h"
#include "collectors/reference.h"
#include "pgpulse_revision.h"

namespace {

using namespace pgpulse::agent;

struct Flags {
  std::string config_file, listen, telemetry = "/metrics", level = "info", format = "logfmt";
  std::string web_config_file;
  std::string profile;  // --metrics.profile; "" = the config's
  bool lifecycle = false;
  int per_client = 8;
  bool connect = false;
  CLI::App* check = nullptr;
  CLI::App* reference = nullptr;
  CLI::App* sql = nullptr;
  std::string sql_collector;
  int sql_server_version = 150000;
  ExporterFlags exporter;
};

// pgpulse's own port, clear of postgres_exporter's (9187) and pg_exporter's (9630); with
// --metrics.profile=postgres_exporter, postgres_exporter's, so a drop-in keeps its scrape config.
std::string DefaultListenAddress(const Flags& f) { return f.profile == "postgres_exporter" ? ":9187" : ":9679"; }

void DefineFlags(CLI::App& app, Flags& f) {
  app.set_version_flag("--version", std::string("pgpulse ") + PGPULSE_VERSION + " (revision " + PGPULSE_REVISION + ")");
  app.add_option("--config.file", f.config_file, "Configuration file (YAML); optional");
  app.add_option("--web.config.file", f.web_config_file,
                 "TLS and basic auth for the endpoints (exporter-toolkit web config format); optional");
  app.add_option("--web.listen-address", f.listen,
                 "Address to listen on (host:port, :port); default :9679, or :9187 with "
                 "--metrics.profile=postgres_exporter")
      ->envname("PG_EXPORTER_WEB_LISTEN_ADDRESS");
  app.add_option("--web.telemetry-path", f.telemetry, "Path under which to expose metrics")
      ->capture_default_str()
      ->envname("PG_EXPORTER_WEB_TELEMETRY_PATH");
  app.add_flag("--web.enable-lifecycle", f.lifecycle, "Reload the configuration on POST /-/reload (off: 404)");
  app.add_option("--web.max-connections-per-client", f.per_client,
                 "Connections one client address may hold open at once (0 = no limit)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--metrics.profile", f.profile,
                 "Metric names to serve: pgpulse, postgres_exporter or both (default: the config's metrics_profile, "
                 "else pgpulse)")
      ->check(CLI::IsMember({"pgpulse", "postgres_exporter", "both"}));
  app.add_option("--log.level", f.level, "debug, info, warn, error")->capture_default_str();
  app.add_option("--log.format", f.format, "logfmt or json")->capture_default_str();
  DefineExporterFlags(app, f.exporter);
  app.fallthrough();  // `pgpulse check --config.file=...` reads naturally
  f.check = app.add_subcommand("check", "Validate configuration and definitions, then exit");
  f.check->add_flag("--connect", f.connect, "Also run every collector once against each target and print a table");
  f.reference = app.add_subcommand("reference", "Print the metric reference (Markdown) of the built-in definitions");
  f.sql = app.add_subcommand("sql", "Print the SQL a built-in collector runs (to read, EXPLAIN or time it)");
  f.sql->add_option("collector", f.sql_collector, "Collector name, e.g. table_stats or pe_stat_user_tables")
      ->required();
  f.sql->add_option("--server-version", f.sql_server_version, "server_version_num whose variant to print")
      ->capture_default_str()
      ->check(CLI::Range(90000, 1000000));
}

// `pgpulse sql NAME`: the SQL of the built-in definition NAME (either profile's) for a server of `version`.
int PrintSql(const std::string& name, int version) {
  for (const auto& set :
       {pgpulse::collectors::EmbeddedDefinitions(), pgpulse::collectors::EmbeddedPostgresExporterDefinitions()}) {
    auto defs = pgpulse::collectors::LoadDefinitions(set);
    for (const auto& d : defs.definitions) {
      if (d.name != name) continue;
      for (const auto& v : d.variants) {
        if (v.min_version <= version && version < v.max_version) {
          std::cout << v.sql;
          return 0;
        }
      }
      std::cerr << name << ": no SQL for server_version_num " << version << " (the collector is skipped there)\n";
      return 1;
    }
  }
  std::cerr << "no built-in collector named '" << name << "'\n";
  return 1;
}

int PrintReference() {
  auto defs = pgpulse::collectors::LoadDefinitions(pgpulse::collectors::EmbeddedDefinitions());
  for (const auto& e : defs.errors) std::cerr << "error: " << e << "\n";
  if (!defs.ok()) return 1;
  std::cout << pgpulse::collectors::RenderReference(defs.definitions,
                                                    {BackrestSource(), BackupFilesSource(), sources::LogsSource()});
  return 0;
}

// Serves until SIGTERM or SIGINT (blocked in `signals`), reloading on SIGHUP.
void WaitForSignals(HttpServer& server, const sigset_t& signals) {
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      server.Reload("SIGHUP");
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
    return;
  }
}

int Serve(const Flags& f, const AgentOptions& options) {
  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  WebConfig web;
  if (!f.web_config_file.empty()) {
    WebConfigResult w = LoadWebConfig(f.web_config_file);
    for (const auto& e : w.errors) std::cerr << "error: " << e << "\n";
    if (!w.ok()) return 1;
    web = w.config;
  }
  SelfMetrics metrics(PGPULSE_VERSION, PGPULSE_REVISION);
  {
    Agent agent(options, metrics);
    auto errors = agent.Reload();
    if (!errors.empty()) {
      for (const auto& e : errors) std::cerr << "error: " << e << "\n";
      return 1;
    }
    HttpServer server(agent, f.telemetry, web, f.per_client);
    server.SetWebConfigFile(f.web_config_file);
    server.EnableLifecycle(f.lifecycle);
    if (std::string e = server.Start(f.listen); !e.empty()) {
      LogError("cannot start", {{"error", e}});
      return 1;
    }
    LogInfo("listening", {{"address", f.listen},
                          {"telemetry_path", f.telemetry},
                          {"tls", web.tls ? "on" : "off"},
                          {"basic_auth", web.users.empty() ? "off" : "on"},
                          {"lifecycle", f.lifecycle ? "on" : "off"},
                          {"version", PGPULSE_VERSION}});
    WaitForSignals(server, signals);
  }
  LogInfo("stopped");
  return 0;
}

// glibc also keeps, per thread, a cache of small freed blocks (tcache) that only that thread's
// later allocations reuse. CivetWeb hands connections to its 128 workers in turn, so over the
// first few hundred scrapes every worker fills a cache of its own: about 2.5 MiB more RSS that
// nothing uses (a small server, 30 -> 430 scrapes: 18.8 -> 21.3 MiB with the caches, flat
// without, for about 3% more CPU per scrape at full size). glibc reads that setting only when a
// process starts, from GLIBC_TUNABLES: so the agent sets it and starts itself again, once. A
// GLIBC_TUNABLES that already sets tcache_count is the operator's choice and left alone; the
// variable is put back as it was after the restart, so what the agent runs does not inherit it.
void RestartWithoutThreadCaches(char** argv) {
  constexpr const char* kTunables = "GLIBC_TUNABLES";
  constexpr const char* kWas = "PGPULSE_GLIBC_TUNABLES_WAS";  // "=" + the old value, "" if unset
  const auto restore = [&](const char* was) {
    if (was[0] == '=') setenv(kTunables, was + 1, 1);
    else unsetenv(kTunables);
    unsetenv(kWas);
  };
  if (const char* was = std::getenv(kWas)) {
    const std::string copy = was;  // restore() changes the environment it points into
    restore(copy.c_str());
    return;
  }
  const char* current = std::getenv(kTunables);
  if (current && std::strstr(current, "glibc.malloc.tcache_count")) return;
  const std::string was = current ? std::string("=") + current : "";
  const std::string tuned = (current && current[0] ? std::string(current) + ":" : std::string()) +
                            "glibc.malloc.tcache_count=0";
  setenv(kWas, was.c_str(), 1);
  setenv(kTunables, tuned.c_str(), 1);
  execv("/proc/self/exe", argv);
  restore(was.c_str());  // no /proc: go on with the caches
}

}  // namespace

int main(int argc, char** argv) {
  RestartWithoutThreadCaches(argv);
  // glibc gives each allocating thread its own arena (up to 8 per core), and each arena keeps
  // its high-water mark: with a worker per target and 32 HTTP threads building scrape bodies,
  // RSS grew with how many threads had ever served a scrape. Two arenas are plenty here.
  mallopt(M_ARENA_MAX, 2);
  // glibc raises its mmap threshold to the size of each large block freed (and the trim threshold
  // to twice that), and a thread arena other than the first is only ever shrunk from its top
  // above that trim threshold: malloc_trim does not touch it. So free memory up to twice the
  // largest block ever freed stayed resident (8 to 10 MiB in a 3,000-table soak: 33 MiB of RSS
  // for 10 MiB in use). Fixed thresholds keep it at 2 MiB: blocks above that (large result
  // vectors at tens of thousands of tables) are mapped on their own and unmapped when freed;
  // the exposition's pieces (1 MiB) and slices (256 KiB) stay below it.
  mallopt(M_MMAP_THRESHOLD, 2 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 2 * 1024 * 1024);
  CLI::App app{"pgpulse: PostgreSQL metrics for Prometheus"};
  Flags f;
  DefineFlags(app, f);
  CLI11_PARSE(app, argc, argv);
  if (*f.reference) return PrintReference();
  if (*f.sql) return PrintSql(f.sql_collector, f.sql_server_version);
  if (f.exporter.dump_maps) return PrintExporterMaps(std::cout, std::cerr);
  if (f.listen.empty()) f.listen = DefaultListenAddress(f);

  if (std::string e = InitLogging(f.level, f.format); !e.empty()) {
    std::cerr << e << "\n";
    return 2;
  }
  if (f.telemetry.empty() || f.telemetry[0] != '/' || f.telemetry == "/" || f.telemetry == "/healthz" ||
      f.telemetry == "/readyz") {
    std::cerr << "--web.telemetry-path: must start with '/' and differ from /, /healthz and /readyz\n";
    return 2;
  }
  AgentOptions options;
  options.config_file = f.config_file;
  options.data_sources = ReadDataSources(ProcessEnvironment(), options.environment_errors);
  options.exporter = f.exporter;
  options.metrics_profile = ParseMetricsProfile(f.profile);
  if (*f.check) return RunCheck(options, f.connect, std::cout, std::cerr);
  return Serve(f, options);
}
