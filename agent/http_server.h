#pragma once
// The HTTP endpoints (CivetWeb): telemetry path, /healthz, /readyz, landing page.
// CivetWeb's worker threads call into Agent, which is thread-safe.

#include <string>

#include "agent/runtime.h"
#include "agent/web_config.h"

struct mg_context;
struct mg_connection;

namespace pgpulse::agent {

class HttpServer {
 public:
  // `web` (from --web.config.file) turns on TLS and/or basic auth.
  HttpServer(Agent& agent, std::string telemetry_path, WebConfig web = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // `listen_address` as exporters take it: "host:port", ":port" (all
  // interfaces) or "[::1]:port". Returns "" or an error message.
  std::string Start(const std::string& listen_address);
  void Stop();

  // Converts an exporter-style listen address to CivetWeb's listening_ports
  // syntax; "" on a malformed address.
  static std::string ToCivetPorts(const std::string& listen_address);

 private:
  static int Handle(::mg_connection* conn, void* self);
  int Dispatch(::mg_connection* conn);

  Agent& agent_;
  std::string telemetry_path_;
  WebConfig web_;
  BasicAuth auth_;
  ::mg_context* ctx_ = nullptr;
  std::string wake_host_;  // address Stop() connects to; "" = loopback
};

}  // namespace pgpulse::agent
