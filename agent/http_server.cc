#include "agent/http_server.h"

#include <civetweb.h>
#include <malloc.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>
#include <thread>

#include "agent/gzip.h"
#include "agent/log.h"
#include "agent/metrics_response.h"

namespace pgpulse::agent {

namespace {

constexpr const char* kWorkers = "128";
constexpr const char* kRequestTimeoutMs = "5000";
constexpr const char* kKeepAliveTimeoutMs = "5000";

// A query parameter, decoded; "" when absent. False with `error` when it is longer than
// `max` bytes, given twice or contains a NUL byte (%00), each of which would otherwise
// silently change what the request names.
bool QueryParam(const char* qs, const char* name, size_t max, std::string& value, std::string& error) {
  std::vector<char> buf(max + 2);
  const size_t len = std::strlen(qs);
  int n = mg_get_var2(qs, len, name, buf.data(), buf.size(), 0);
  if (n == -1) return true;
  std::string what = std::string("parameter '") + name + "'";
  if (n < 0 || static_cast<size_t>(n) > max) {
    error = what + " is longer than " + std::to_string(max) + " bytes";
    return false;
  }
  if (std::strlen(buf.data()) != static_cast<size_t>(n)) {
    error = what + " contains a NUL byte (%00)";
    return false;
  }
  std::vector<char> again(max + 2);
  if (mg_get_var2(qs, len, name, again.data(), again.size(), 1) != -1) {
    error = what + " is given more than once";
    return false;
  }
  value.assign(buf.data(), static_cast<size_t>(n));
  return true;
}

void Send(mg_connection* conn, int status, const char* reason, const std::string& content_type, const std::string& body,
          const std::string& extra_headers, bool head) {
  mg_printf(conn, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
            status, reason, content_type.c_str(), body.size(), extra_headers.c_str());
  if (!head && !body.empty()) mg_write(conn, body.data(), body.size());
}

int LogMessage(const mg_connection*, const char* message) {
  LogWarn("http server", {{"error", message}});
  return 1;
}

// Gives the system back the pages of the calling thread's stack below its current frame, which the
// last request touched and nothing uses now. CivetWeb hands each new connection to the worker that
// has waited longest, so a scraper that opens a connection per scrape walks through every one of
// the kWorkers workers, each keeping the ~40 KiB of stack its request touched: RSS would climb by
// 5 MiB over the first few hundred scrapes and stay there. Released, only the workers busy at a
// moment hold stack pages. Costs one madvise per connection and a few page faults per request.
void ReleaseIdleStack() {
  // This thread's stack, asked once per thread (pthread_getattr_np reads the CPU affinity and
  // allocates each time): from its lowest usable address (the guard page is below) to `high`.
  // Empty for the main thread, whose stack rlimit sizes, or without an answer.
  struct Bounds {
    uintptr_t low = 0, high = 0;
  };
  thread_local const Bounds stack = [] {
    Bounds b;
    if (::getpid() == ::gettid()) return b;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return b;
    void* base = nullptr;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &base, &size) == 0 && base) {
      b.low = reinterpret_cast<uintptr_t>(base);
      b.high = b.low + size;
    }
    pthread_attr_destroy(&attr);
    return b;
  }();
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  volatile char here = 0;
  // A page of margin below this frame, for the calls this function and its callers still make.
  const uintptr_t below = (reinterpret_cast<uintptr_t>(&here) - page) & ~(page - 1);
  const uintptr_t low = (stack.low + page - 1) & ~(page - 1);
  if (stack.low == 0 || below <= low || below >= stack.high) return;
  ::madvise(reinterpret_cast<void*>(low), below - low, MADV_DONTNEED);
}

// See agent/openssl_compat.c: must be loaded before CivetWeb dlopens OpenSSL.
std::string LoadOpenSslCompat() {
  std::vector<std::string> dirs;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    std::string exe = self;
    dirs.push_back(exe.substr(0, exe.rfind('/')));
  }
  // Next to the binary (a build tree), else where the package installs them; never a
  // build directory named at compile time, which on another machine may be anyone's /tmp.
  dirs.push_back(PGPULSE_INSTALL_LIBDIR);
  for (const char* lib : {"libpgpulse-libcrypto-compat.so", "libpgpulse-libssl-compat.so"}) {
    bool loaded = false;
    std::string tried;
    for (const std::string& d : dirs) {
      std::string path = d + "/" + lib;
      if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
        loaded = true;
        break;
      }
      tried += " " + path;
    }
    if (!loaded) return std::string("TLS needs ") + lib + ", not found in:" + tried;
  }
  return "";
}

// CivetWeb wants certificate and key in one PEM file; it reads it in mg_start, so the caller
// removes this private temporary copy right after. Returns "" or the error.
std::string WriteTemporaryPem(const WebConfig& web, std::string& pem_path) {
  char tmpl[] = "/tmp/pgpulse-tls-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return std::string("cannot create a temporary file for the TLS key: ") + std::strerror(errno);
  pem_path = tmpl;
  std::string pem;
  for (const std::string& f : {web.cert_file, web.key_file}) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    pem += ss.str() + "\n";
  }
  bool written = ::write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size());
  ::close(fd);
  if (!written) {
    ::unlink(pem_path.c_str());
    return "cannot write the temporary TLS file";
  }
  return "";
}

}  // namespace

HttpServer::HttpServer(Agent& agent, std::string telemetry_path, WebConfig web, int max_connections_per_client)
    : agent_(agent),
      telemetry_path_(std::move(telemetry_path)),
      web_(std::move(web)),
      auth_(std::make_shared<BasicAuth>(web_.users)),
      limiter_(max_connections_per_client) {}

HttpServer::~HttpServer() { Stop(); }

namespace {
// What a connection carries from InitConnection to ConnectionClose.
struct ConnectionState {
  HttpServer* server = nullptr;
  bool checked = false;   // its first request has asked the limiter
  bool admitted = false;  // and was let in: counted until the connection closes
  std::string client;     // remote address and port, from the first request
  int port = 0;
};
}  // namespace

int HttpServer::InitConnection(const mg_connection* conn, void** conn_data) {
  auto* self = static_cast<HttpServer*>(mg_get_user_data(mg_get_context(conn)));
  if (!self) return 0;
  auto* state = new ConnectionState;
  state->server = self;
  *conn_data = state;
  self->limiter_.Accepted();
  return 0;
}

void HttpServer::ConnectionClose(const mg_connection* conn) {
  auto* state = static_cast<ConnectionState*>(mg_get_user_connection_data(conn));
  if (!state) return;
  if (state->admitted) state->server->limiter_.Release(state->client, state->port);
  delete state;
  ReleaseIdleStack();  // on the worker's thread, its request done
}

std::string HttpServer::ToCivetPorts(const std::string& addr) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return "";
  std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
      std::stoi(port) > 65535)
    return "";
  if (host.empty() || host == "0.0.0.0") return port;
  if (host.front() == '[') {
    if (host.back() != ']') return "";
    return "[" + host.substr(1, host.size() - 2) + "]:" + port;
  }
  if (host == "localhost") host = "127.0.0.1";
  if (host.find_first_not_of("0123456789.") != std::string::npos) return "";
  return host + ":" + port;
}

std::string HttpServer::Start(const std::string& listen_address) {
  std::string ports = ToCivetPorts(listen_address);
  if (ports.empty())
    return "--web.listen-address: cannot use '" + listen_address + "' (expected host:port, :port or [ipv6]:port)";
  // A worker serves one connection at a time, from its first byte to its last: a client gets
  // kRequestTimeoutMs to send its request (and the TLS handshake), an idle keep-alive
  // connection is closed after kKeepAliveTimeoutMs, and the per-client cap (InitConnection)
  // keeps any one address from holding more than its share of the kWorkers workers.
  std::vector<const char*> options = {"listening_ports",       nullptr,
                                      "num_threads",           kWorkers,
                                      "request_timeout_ms",    kRequestTimeoutMs,
                                      "keep_alive_timeout_ms", kKeepAliveTimeoutMs,
                                      "enable_keep_alive",     "yes",
                                      "connection_queue",      "256",
                                      "listen_backlog",        "1024"};
  std::string pem_path, protocol;
  if (web_.tls) {
    ports += "s";
    std::string error;
    auto pair = TlsCertificate::Read(web_.cert_file, web_.key_file, error);
    if (!pair) return error;
    certificate_.Use(std::move(pair));
    if (std::string e = WriteTemporaryPem(web_, pem_path); !e.empty()) return e;
    // CivetWeb's ssl_protocol_version: 2 = TLS 1.0+, 3 = 1.1+, 4 = 1.2+, 5 = 1.3.
    protocol = web_.min_version == "TLS10"   ? "2"
               : web_.min_version == "TLS11" ? "3"
               : web_.min_version == "TLS13" ? "5"
                                             : "4";
    options.insert(options.end(), {"ssl_certificate", pem_path.c_str(), "ssl_protocol_version", protocol.c_str()});
    if (std::string e = LoadOpenSslCompat(); !e.empty()) {
      ::unlink(pem_path.c_str());
      return e;
    }
    mg_init_library(MG_FEATURES_TLS);
  }
  options[1] = ports.c_str();
  options.push_back(nullptr);
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  callbacks.log_message = LogMessage;
  callbacks.init_connection = &HttpServer::InitConnection;
  callbacks.connection_close = &HttpServer::ConnectionClose;
  callbacks.init_ssl = [](void* ssl_ctx, void* self) {
    static_cast<HttpServer*>(self)->certificate_.Attach(ssl_ctx);
    return 0;  // CivetWeb loads the file too; the handshake callback then presents the latest pair
  };
  mg_init_data init{&callbacks, this, options.data()};
  char text[256] = {0};
  unsigned code = 0;
  mg_error_data err{&code, text, sizeof text};
  ctx_ = mg_start2(&init, &err);
  if (!pem_path.empty()) ::unlink(pem_path.c_str());
  if (!ctx_) return "cannot listen on " + listen_address + ": " + (text[0] ? text : "unknown error");
  mg_set_request_handler(ctx_, "**", &HttpServer::Handle, this);
  mg_server_port bound[4];
  for (int i = 0, n = mg_get_server_ports(ctx_, 4, bound); i < n; ++i) listen_ports_.push_back(bound[i].port);
  limiter_.SetListenPorts(listen_ports_);
  // Where Stop() can reach the listener: the bound address, or loopback for a wildcard.
  if (ports.find(':') != std::string::npos) {
    std::string host = ports.substr(0, ports.rfind(':'));
    if (host.front() == '[') host = host.substr(1, host.size() - 2);
    wake_host_ = host == "::" ? "" : host;
  }
  return "";
}

void HttpServer::Stop() {
  if (!ctx_) return;
  // CivetWeb's accept loop looks at its stop flag only when poll() returns,
  // which takes up to 2 s on an idle server; a connection wakes it at once.
  mg_server_port ports[4];
  int n = mg_get_server_ports(ctx_, 4, ports);
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    mg_stop(ctx_);
    stopped = true;
  });
  for (int attempt = 0; attempt < 100 && !stopped; ++attempt) {
    for (int i = 0; i < n; ++i) {
      bool v6 = ports[i].protocol == 2;
      int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
      if (fd < 0) continue;
      if (v6) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(static_cast<uint16_t>(ports[i].port));
        inet_pton(AF_INET6, wake_host_.empty() ? "::1" : wake_host_.c_str(), &a.sin6_addr);
        connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(ports[i].port));
        inet_pton(AF_INET, wake_host_.empty() ? "127.0.0.1" : wake_host_.c_str(), &a.sin_addr);
        connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      }
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stopper.join();
  ctx_ = nullptr;
}

std::vector<std::string> HttpServer::Reload(const std::string& trigger) {
  std::lock_guard<std::mutex> lock(reload_mu_);
  LogInfo("reloading", {{"trigger", trigger}});
  std::vector<std::string> refused;
  WebConfigResult web;
  std::shared_ptr<const TlsCertificate::Pair> certificate;
  if (!web_config_file_.empty()) {
    web = ReloadWebConfig(web_config_file_, web_);
    refused = web.errors;
    std::string error;
    if (refused.empty() && web.config.tls &&
        !(certificate = TlsCertificate::Read(web.config.cert_file, web.config.key_file, error)))
      refused.push_back(web_config_file_ + ": " + error);
  }
  std::vector<std::string> errors = agent_.Reload(refused);
  if (errors.empty() && certificate) {
    certificate_.Use(std::move(certificate));
    LogInfo("tls certificate loaded", {{"cert_file", web_.cert_file}});
  }
  if (errors.empty() && !web_config_file_.empty() && !(web.config == web_)) {
    web_ = web.config;
    std::atomic_store(&auth_, std::make_shared<BasicAuth>(web_.users));
    LogInfo("web config applied", {{"file", web_config_file_}, {"basic_auth", web_.users.empty() ? "off" : "on"}});
  }
  return errors;
}

int HttpServer::ServeReload(mg_connection* conn, const std::string& method) {
  const char* text = "text/plain; charset=utf-8";
  if (!lifecycle_) {
    // As Prometheus and Alertmanager: without --web.enable-lifecycle the endpoint does not exist.
    Send(conn, 404, "Not Found", text, "404 not found: /-/reload (start pgpulse with --web.enable-lifecycle)\n", "",
         method == "HEAD");
    return 404;
  }
  if (method != "POST" && method != "PUT") {
    Send(conn, 405, "Method Not Allowed", text, "405 method " + method + " not allowed on /-/reload (use POST)\n",
         "Allow: POST, PUT\r\n", method == "HEAD");
    return 405;
  }
  // A reload parses every definition, and std::regex recurses once per character it matches: a
  // CivetWeb worker's stack is small (under AddressSanitizer the reload overflowed it and killed the
  // agent), so the reload runs on a thread of its own with the default stack.
  std::vector<std::string> errors;
  std::thread([&] { errors = Reload("http"); }).join();
  if (errors.empty()) {
    Send(conn, 200, "OK", text, "configuration reloaded\n", "", false);
    return 200;
  }
  std::string body = "configuration rejected; the previous one keeps running:\n";
  for (const std::string& e : errors) body += Redact(e) + "\n";
  Send(conn, 500, "Internal Server Error", text, body, "", false);
  return 500;
}

int HttpServer::ServeRole(mg_connection* conn, const std::string& path, bool head) {
  const char* text = "text/plain; charset=utf-8";
  const mg_request_info* ri = mg_get_request_info(conn);
  const char* qs = ri->query_string ? ri->query_string : "";
  std::string name, max_lag, error;
  auto bad = [&](const std::string& why) {
    Send(conn, 400, "Bad Request", text, "400 " + why + "\n", "", head);
    return 400;
  };
  if (!QueryParam(qs, "target", 255, name, error) || !QueryParam(qs, "max_lag", 32, max_lag, error)) return bad(error);
  double max_lag_seconds = -1;
  if (!max_lag.empty()) {
    char* end = nullptr;
    max_lag_seconds = std::strtod(max_lag.c_str(), &end);
    if (*end != 0 || !(max_lag_seconds >= 0) || max_lag_seconds > 1e9)
      return bad("max_lag must be a number of seconds (e.g. 10 or 0.5), got '" + max_lag + "'");
    if (path == "/primary") return bad("max_lag applies to /replica and /read, not /primary");
  }
  auto rt = agent_.runtime();
  std::shared_ptr<Target> target;
  if (name.empty() && rt->targets.size() == 1) target = rt->targets[0];
  if (name.empty() && !target) return bad(path + " needs ?target=NAME: this agent has several targets");
  for (const auto& t : rt->targets) {
    if (!name.empty() && t->config().name == name) target = t;
  }
  if (!target) {
    Send(conn, 404, "Not Found", text, "404 no target named '" + name + "' in the config\n", "", head);
    return 404;
  }
  RoleAnswer answer;
  if (target->kind() != collectors::TargetKind::Postgres) {
    answer = {503, "unknown: target '" + target->config().name + "' is not a PostgreSQL server\n"};
  } else {
    const RoleQuestion q = path == "/primary"   ? RoleQuestion::Primary
                           : path == "/replica" ? RoleQuestion::Replica
                                                : RoleQuestion::Read;
    answer = AnswerRole(q, roles_.Check(target), max_lag_seconds);
  }
  Send(conn, answer.status, answer.status == 200 ? "OK" : "Service Unavailable", text, answer.body, "", head);
  return answer.status;
}

// The scrape's text (megabytes with thousands of tables) is free now: return those pages to the
// system, so RSS follows the steady state rather than keeping every scrape's peak. Trimming costs
// page faults on the next scrape and TLB shootdowns across threads, so under a stream of scrapes it
// runs at most once a second; a scrape with no other in flight always trims.
void HttpServer::TrimAfterScrape() {
  const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  int64_t last = last_trim_ns_.load();
  const bool alone = scrapes_in_flight_.load() == 1;  // only the caller
  if (!alone && now - last < std::chrono::nanoseconds(std::chrono::seconds(1)).count()) return;
  if (!last_trim_ns_.compare_exchange_strong(last, now) && !alone) return;
  malloc_trim(0);
}

int HttpServer::Handle(mg_connection* conn, void* self) {
  try {
    return static_cast<HttpServer*>(self)->Dispatch(conn);
  } catch (const std::exception& e) {
    LogError("request failed", {{"error", e.what()}});
    Send(conn, 500, "Internal Server Error", "text/plain; charset=utf-8", "internal error\n", "", false);
    return 500;
  }
}

int HttpServer::Dispatch(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string method = ri->request_method ? ri->request_method : "";
  const std::string path = ri->local_uri ? ri->local_uri : "";
  const bool head = method == "HEAD";
  const char* text = "text/plain; charset=utf-8";

  // A connection over its address's cap gets no work done.
  auto* state = static_cast<ConnectionState*>(mg_get_user_connection_data(conn));
  if (state && !state->checked) {
    state->checked = true;
    state->client = ri->remote_addr;
    state->port = ri->remote_port;
    state->admitted = limiter_.Admit(state->client, state->port);
  }
  if (state && !state->admitted) {
    Send(conn, 503, "Service Unavailable", text,
         "503 too many connections from " + state->client + " (--web.max-connections-per-client)\n",
         "Connection: close\r\n", head);
    return 503;
  }

  // /healthz stays open so liveness probes need no credentials; it says only "ok". Every other
  // path, the role checks and /-/reload included, needs them.
  const std::shared_ptr<BasicAuth> auth = std::atomic_load(&auth_);
  if (auth->enabled() && path != "/healthz" && !auth->Allows(mg_get_header(conn, "Authorization"))) {
    Send(conn, 401, "Unauthorized", text, "401 unauthorized\n", "WWW-Authenticate: Basic realm=\"pgpulse\"\r\n", head);
    return 401;
  }
  if (path == "/-/reload") return ServeReload(conn, method);
  const bool role = path == "/primary" || path == "/replica" || path == "/read";
  const bool known = path == telemetry_path_ || path == "/" || path == "/healthz" || path == "/readyz" ||
                     path == "/probe" || role;
  if (!known) {
    Send(conn, 404, "Not Found", text, "404 not found: " + path + "\n", "", head);
    return 404;
  }
  if (method != "GET" && !head) {
    Send(conn, 405, "Method Not Allowed", text, "405 method " + method + " not allowed on " + path + "\n",
         "Allow: GET, HEAD\r\n", false);
    return 405;
  }
  if (role) return ServeRole(conn, path, head);
  if (path == telemetry_path_ || path == "/probe") {
    ++scrapes_in_flight_;
    struct Done {
      std::atomic<int>& n;
      ~Done() { --n; }
    } done{scrapes_in_flight_};
    double timeout = 0;
    if (const char* h = mg_get_header(conn, "X-Prometheus-Scrape-Timeout-Seconds")) timeout = std::strtod(h, nullptr);
    const char* ae = mg_get_header(conn, "Accept-Encoding");
    const bool http11 = ri->http_version && std::strcmp(ri->http_version, "1.1") == 0;
    MetricsResponse response(conn, ae && AcceptsGzip(ae), head, http11);
    const collectors::ExpositionSink sink = [&response](std::string& text) { response.Write(text); };
    if (path == "/probe") {
      const char* qs = ri->query_string ? ri->query_string : "";
      std::string target, module, error;
      if (!QueryParam(qs, "target", 255, target, error) || !QueryParam(qs, "auth_module", 127, module, error)) {
        Send(conn, 400, "Bad Request", text, "400 " + error + "\n", "", head);
        return 400;
      }
      if (target.empty()) {
        Send(conn, 400, "Bad Request", text, "400 /probe needs ?target=NAME (a target from the config)\n", "", head);
        return 400;
      }
      Agent::ProbeResult probe = agent_.RenderProbe(target, module, timeout, sink);
      if (probe.status != 200) {
        const char* reason = probe.status == 404 ? "Not Found" : probe.status == 403 ? "Forbidden" : "Bad Request";
        Send(conn, probe.status, reason, text, std::to_string(probe.status) + " " + probe.body, "", head);
        return probe.status;
      }
    } else {
      agent_.RenderMetrics(timeout, sink);
    }
    response.Finish();
    TrimAfterScrape();
    return 200;
  }
  if (path == "/healthz") {
    Send(conn, 200, "OK", text, "ok\n", "", head);
    return 200;
  }
  if (path == "/readyz") {
    std::string detail;
    bool ready = agent_.Ready(detail);
    Send(conn, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", text, detail, "", head);
    return ready ? 200 : 503;
  }
  Send(conn, 200, "OK", "text/html; charset=utf-8", agent_.RenderLanding(telemetry_path_), "", head);
  return 200;
}

}  // namespace pgpulse::agent
