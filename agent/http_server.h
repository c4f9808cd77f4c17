#pragma once
// The HTTP endpoints (CivetWeb): telemetry path, /healthz, /readyz, /probe, the role checks
// (/primary, /replica, /read), POST /-/reload (with --web.enable-lifecycle), landing page.
// CivetWeb's worker threads call into Agent, which is thread-safe.

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/client_limit.h"
#include "agent/role_check.h"
#include "agent/runtime.h"
#include "agent/tls_certificate.h"
#include "agent/web_config.h"

struct mg_context;
struct mg_connection;

namespace pgpulse::agent {

class HttpServer {
 public:
  // `web` (from --web.config.file) turns on TLS and/or basic auth.
  // `max_connections_per_client`: connections one client address may hold at once (0 = no limit);
  // more are closed before their request is read, so one client cannot take every worker.
  HttpServer(Agent& agent, std::string telemetry_path, WebConfig web = {}, int max_connections_per_client = 8);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // `listen_address` as exporters take it: "host:port", ":port" (all
  // interfaces) or "[::1]:port". Returns "" or an error message.
  std::string Start(const std::string& listen_address);
  void Stop();

  // Reloads the config (Agent::Reload) and the web config file given here ("" = none), whose
  // basic_auth_users then apply at once, and reads the TLS certificate and key files again. From SIGHUP (main thread)
  // and POST /-/reload (a worker); one reload at a time. Returns the errors (empty: applied).
  void SetWebConfigFile(std::string path) { web_config_file_ = std::move(path); }
  std::vector<std::string> Reload(const std::string& trigger);
  // --web.enable-lifecycle: POST /-/reload answers (off: 404, as Prometheus does). Before Start.
  void EnableLifecycle(bool on) { lifecycle_ = on; }

  // Converts an exporter-style listen address to CivetWeb's listening_ports
  // syntax; "" on a malformed address.
  static std::string ToCivetPorts(const std::string& listen_address);

 private:
  static int Handle(::mg_connection* conn, void* self);
  // CivetWeb callbacks (worker threads): admit a connection under its address's cap, count it out.
  static int InitConnection(const ::mg_connection* conn, void** conn_data);
  static void ConnectionClose(const ::mg_connection* conn);
  void TrimAfterScrape();
  int Dispatch(::mg_connection* conn);
  int ServeRole(::mg_connection* conn, const std::string& path, bool head);
  int ServeReload(::mg_connection* conn, const std::string& method);

  Agent& agent_;
  std::string telemetry_path_;
  WebConfig web_;                    // as running; guarded by reload_mu_ after Start
  std::shared_ptr<BasicAuth> auth_;  // std::atomic_load / std::atomic_store only: a reload swaps it
  std::string web_config_file_;
  bool lifecycle_ = false;
  std::mutex reload_mu_;  // one reload at a time
  RoleChecker roles_;
  TlsCertificate certificate_;  // presented by every handshake; replaced by a reload
  ::mg_context* ctx_ = nullptr;
  std::string wake_host_;                 // address Stop() connects to; "" = loopback
  std::vector<int> listen_ports_;         // set by Start()
  ClientLimiter limiter_;                 // --web.max-connections-per-client
  std::atomic<int64_t> last_trim_ns_{0};  // steady clock, last malloc_trim after a scrape
  std::atomic<int> scrapes_in_flight_{0};
};

}  // namespace pgpulse::agent
