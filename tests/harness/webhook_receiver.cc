#include "tests/harness/webhook_receiver.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "tests/harness/prometheus_server.h"

namespace pgpulse::testing {
namespace {

void Send(mg_connection* conn, int status, const char* reason, const std::string& body) {
  mg_printf(conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", status, reason,
            body.size());
  mg_write(conn, body.data(), body.size());
}

// Keeps CivetWeb from printing to stderr; errors show up as failed deliveries in Alertmanager's log.
int IgnoreLogMessage(const mg_connection*, const char*) { return 1; }

}  // namespace

std::unique_ptr<WebhookReceiver> WebhookReceiver::Start() {
  std::unique_ptr<WebhookReceiver> receiver(new WebhookReceiver());
  // Port 0: the kernel picks a free one, read back below, so no other process can take it in between.
  const char* options[] = {"listening_ports",    "127.0.0.1:0", "num_threads", "4",
                           "request_timeout_ms", "10000",       nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  callbacks.log_message = IgnoreLogMessage;
  mg_init_data init{&callbacks, receiver.get(), options};
  char text[256] = {0};
  unsigned code = 0;
  mg_error_data error{&code, text, sizeof text};
  receiver->ctx_ = mg_start2(&init, &error);
  if (receiver->ctx_ == nullptr) {
    throw std::runtime_error(std::string("webhook receiver cannot start: ") + (text[0] ? text : "unknown error"));
  }
  mg_set_request_handler(receiver->ctx_, "**", &WebhookReceiver::Handle, receiver.get());
  mg_server_port ports[1];
  if (mg_get_server_ports(receiver->ctx_, 1, ports) != 1 || ports[0].port <= 0) {
    throw std::runtime_error("webhook receiver: cannot read its listening port");
  }
  receiver->port_ = ports[0].port;
  return receiver;
}

WebhookReceiver::~WebhookReceiver() {
  if (ctx_ == nullptr) return;
  // CivetWeb's accept loop looks at its stop flag only when poll() returns, up to 2 s later on an idle
  // server; a connection wakes it at once.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    mg_stop(ctx_);
    stopped = true;
  });
  for (int attempt = 0; attempt < 100 && !stopped; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port_));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      (void)connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stopper.join();
}

std::string WebhookReceiver::url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/webhook"; }

int WebhookReceiver::Handle(mg_connection* conn, void* self) {
  try {
    return static_cast<WebhookReceiver*>(self)->Record(conn);
  } catch (const std::exception& e) {
    Send(conn, 500, "Internal Server Error", std::string(e.what()) + "\n");
    return 500;
  }
}

int WebhookReceiver::Record(mg_connection* conn) {
  const mg_request_info* request = mg_get_request_info(conn);
  if (std::strcmp(request->request_method, "POST") != 0) {
    Send(conn, 405, "Method Not Allowed", "POST only\n");
    return 405;
  }
  std::string body;
  char buffer[8192];
  for (int n; (n = mg_read(conn, buffer, sizeof buffer)) > 0;) body.append(buffer, static_cast<size_t>(n));

  // Parsed before taking the lock; a payload that is not JSON is kept (for Payloads()) but yields no alerts.
  std::vector<Alert> alerts;
  std::string error;
  try {
    const detail::Json payload = detail::Json::Parse(body);
    for (const detail::Json& a : payload["alerts"].items()) {
      alerts.push_back(
          {a["labels"]["alertname"].str(), a["status"].str(), a["labels"].StringMap(), a["annotations"].StringMap()});
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    payloads_.push_back(body);
    alerts_.insert(alerts_.end(), alerts.begin(), alerts.end());
  }
  arrived_.notify_all();
  if (!error.empty()) {
    Send(conn, 400, "Bad Request", error + "\n");
    return 400;
  }
  Send(conn, 200, "OK", "ok\n");
  return 200;
}

std::vector<WebhookReceiver::Alert> WebhookReceiver::Received() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return alerts_;
}

std::vector<std::string> WebhookReceiver::Payloads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return payloads_;
}

::testing::AssertionResult WebhookReceiver::WaitFor(const std::string& alertname, const std::string& status,
                                                    double timeout_seconds) const {
  const auto matches = [&] {
    for (const auto& alert : alerts_) {
      if (alert.alertname == alertname && alert.status == status) return true;
    }
    return false;
  };
  std::unique_lock<std::mutex> lock(mutex_);
  if (arrived_.wait_for(lock, std::chrono::milliseconds(static_cast<long>(timeout_seconds * 1000)), matches)) {
    return ::testing::AssertionSuccess();
  }
  std::string seen;
  for (const auto& alert : alerts_) seen += "\n  " + alert.alertname + " " + alert.status;
  return ::testing::AssertionFailure() << "no " << alertname << " " << status << " notification within "
                                       << timeout_seconds << " s; " << payloads_.size() << " payload(s) received"
                                       << (seen.empty() ? std::string(", no alerts") : ", alerts:" + seen);
}

WebhookReceiver::Alert WebhookReceiver::WaitForAlert(const std::string& alertname, const std::string& status,
                                                     const std::map<std::string, std::string>& want,
                                                     double timeout_seconds) const {
  Alert found;
  const auto matches = [&] {
    for (const auto& alert : alerts_) {
      if (alert.alertname == alertname && alert.status == status && LabelsInclude(alert.labels, want)) {
        found = alert;
        return true;
      }
    }
    return false;
  };
  std::unique_lock<std::mutex> lock(mutex_);
  arrived_.wait_for(lock, std::chrono::milliseconds(static_cast<long>(timeout_seconds * 1000)), matches);
  return found;
}

std::string FormatLabels(const std::map<std::string, std::string>& labels) {
  std::string out = "{";
  for (const auto& [key, value] : labels) out += (out.size() > 1 ? ", " : "") + key + "=\"" + value + "\"";
  return out + "}";
}

bool LabelsInclude(const std::map<std::string, std::string>& labels, const std::map<std::string, std::string>& want) {
  for (const auto& [key, value] : want) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace pgpulse::testing
