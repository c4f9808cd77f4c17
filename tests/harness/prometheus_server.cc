#include "tests/harness/prometheus_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/harness/http_client.h"
#include "tests/harness/spawn.h"

namespace pgpulse::testing {

using detail::Json;
using detail::QuoteYaml;

namespace {

using Clock = std::chrono::steady_clock;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

Clock::time_point Deadline(double seconds) {
  return Clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

std::string Indent(const std::string& lines, const std::string& prefix) {
  std::string out;
  std::istringstream in(lines);
  for (std::string line; std::getline(in, line);) out += prefix + line + "\n";
  return out;
}

// "http://host:port/prefix" as the scheme, host:port and path prefix of an alertmanager_config.
void SplitAlertmanagerUrl(const std::string& url, std::string* scheme, std::string* address, std::string* prefix) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) throw std::invalid_argument("alertmanager_url needs a scheme: " + url);
  *scheme = url.substr(0, scheme_end);
  const std::string rest = url.substr(scheme_end + 3);
  const auto slash = rest.find('/');
  *address = rest.substr(0, slash);
  *prefix = slash == std::string::npos ? "/" : rest.substr(slash);
  if (address->empty()) throw std::invalid_argument("alertmanager_url has no host: " + url);
}

std::string ConfigYaml(const PrometheusServer::Options& options, const std::vector<std::string>& rule_paths) {
  std::ostringstream y;
  y << "global:\n  evaluation_interval: " << options.evaluation_interval << "\n" << Indent(options.extra_global, "  ");
  if (!rule_paths.empty()) {
    y << "rule_files:\n";
    for (const auto& path : rule_paths) y << "  - " << QuoteYaml(path) << "\n";
  }
  if (!options.alertmanager_url.empty()) {
    std::string scheme, address, prefix;
    SplitAlertmanagerUrl(options.alertmanager_url, &scheme, &address, &prefix);
    y << "alerting:\n  alertmanagers:\n    - scheme: " << scheme << "\n      path_prefix: " << QuoteYaml(prefix)
      << "\n      static_configs:\n        - targets: [" << QuoteYaml(address) << "]\n";
  }
  y << "scrape_configs:" << (options.targets.empty() ? " []\n" : "\n");
  for (const auto& target : options.targets) {
    y << "  - job_name: " << QuoteYaml(target.job) << "\n"
      << "    scrape_interval: " << target.scrape_interval << "\n";
    if (!target.scrape_timeout.empty()) y << "    scrape_timeout: " << target.scrape_timeout << "\n";
    y << "    metrics_path: " << QuoteYaml(target.metrics_path) << "\n";
    if (!target.params.empty()) {
      y << "    params:\n";
      for (const auto& [name, value] : target.params) {
        y << "      " << QuoteYaml(name) << ": [" << QuoteYaml(value) << "]\n";
      }
    }
    y << "    static_configs:\n      - targets: [" << QuoteYaml(target.address) << "]\n";
  }
  return y.str();
}

std::string PercentEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string FormatLabels(const std::map<std::string, std::string>& labels) {
  std::string out = "{";
  for (const auto& [name, value] : labels) out += (out.size() > 1 ? "," : "") + name + "=" + QuoteYaml(value);
  return out + "}";
}

std::string DescribeAlerts(const std::vector<PrometheusServer::Alert>& alerts) {
  if (alerts.empty()) return "no active alerts";
  std::string out;
  for (const auto& alert : alerts) out += "\n  " + alert.alertname + " " + alert.state;
  return out;
}

}  // namespace

namespace detail {

// Recursive descent over the RFC 8259 grammar.
class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : text_(text) {}

  Json ParseDocument() {
    Json value = ParseValue(0);
    SkipSpace();
    if (pos_ != text_.size()) Fail("trailing characters after the value");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 200;

  [[noreturn]] void Fail(const std::string& what) const {
    throw std::runtime_error("invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }

  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  void Expect(char c) {
    if (!Consume(c)) Fail(std::string("expected '") + c + "'");
  }

  bool ConsumeWord(const char* word) {
    const size_t n = std::strlen(word);
    if (text_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }

  Json ParseValue(int depth) {
    if (depth > kMaxDepth) Fail("nested too deeply");
    SkipSpace();
    if (pos_ >= text_.size()) Fail("unexpected end");
    Json value;
    const char c = text_[pos_];
    if (c == '{') {
      ++pos_;
      value.type_ = Json::Type::kObject;
      if (Consume('}')) return value;
      do {
        SkipSpace();
        if (pos_ >= text_.size() || text_[pos_] != '"') Fail("expected a member name");
        value.keys_.push_back(ParseString());
        Expect(':');
        value.items_.push_back(ParseValue(depth + 1));
      } while (Consume(','));
      Expect('}');
    } else if (c == '[') {
      ++pos_;
      value.type_ = Json::Type::kArray;
      if (Consume(']')) return value;
      do {
        value.items_.push_back(ParseValue(depth + 1));
      } while (Consume(','));
      Expect(']');
    } else if (c == '"') {
      value.type_ = Json::Type::kString;
      value.string_ = ParseString();
    } else if (ConsumeWord("true")) {
      value.type_ = Json::Type::kBool;
      value.boolean_ = true;
    } else if (ConsumeWord("false")) {
      value.type_ = Json::Type::kBool;
    } else if (ConsumeWord("null")) {
      value.type_ = Json::Type::kNull;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      value.type_ = Json::Type::kNumber;
      value.number_ = ParseNumber();
    } else {
      Fail(std::string("unexpected character '") + c + "'");
    }
    return value;
  }

  bool Digit() const { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; }

  double ParseNumber() {
    const size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (!Digit()) Fail("expected a digit");
    if (text_[pos_] == '0') {
      ++pos_;
    } else {
      while (Digit()) ++pos_;
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (!Digit()) Fail("expected a digit after '.'");
      while (Digit()) ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!Digit()) Fail("expected a digit in the exponent");
      while (Digit()) ++pos_;
    }
    return std::strtod(text_.substr(start, pos_ - start).c_str(), nullptr);
  }

  unsigned ParseHex4() {
    if (pos_ + 4 > text_.size()) Fail("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9') {
        code |= static_cast<unsigned>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        code |= static_cast<unsigned>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        code |= static_cast<unsigned>(h - 'A' + 10);
      } else {
        Fail("bad hex digit in \\u escape");
      }
    }
    return code;
  }

  static void AppendUtf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  // At the opening quote; returns the decoded string and leaves pos_ after the closing quote.
  std::string ParseString() {
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) Fail("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) Fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) Fail("unterminated escape");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code = ParseHex4();
          if (code >= 0xD800 && code <= 0xDBFF) {
            // A high surrogate must be followed by an escaped low one; together they name one code point.
            if (text_.compare(pos_, 2, "\\u") != 0) Fail("lone high surrogate");
            pos_ += 2;
            const unsigned low = ParseHex4();
            if (low < 0xDC00 || low > 0xDFFF) Fail("high surrogate without a low one");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          } else if (code >= 0xDC00 && code <= 0xDFFF) {
            Fail("lone low surrogate");
          }
          AppendUtf8(out, code);
          break;
        }
        default: Fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  const std::string& text_;
  size_t pos_ = 0;
};

Json Json::Parse(const std::string& text) { return JsonParser(text).ParseDocument(); }

const Json& Json::operator[](const std::string& key) const {
  static const Json null;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) return items_[i];
  }
  return null;
}

std::map<std::string, std::string> Json::StringMap() const {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (items_[i].type_ == Type::kString) out[keys_[i]] = items_[i].string_;
  }
  return out;
}

std::string QuoteYaml(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

ServerProcess::ServerProcess(std::string name) : name_(std::move(name)) {
  std::string pattern = "/tmp/pgpulse-" + name_ + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error(Errno("mkdtemp " + pattern));
  dir_ = pattern;
}

ServerProcess::~ServerProcess() {
  Stop();
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- " << name_ << " log (last 60 lines) " << dir_ << "/" << name_ << ".log ----\n"
              << LastLines(Log(), 60) << "---- end of " << name_ << " log ----" << std::endl;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string ServerProcess::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::string ServerProcess::Log() const { return ReadFile(dir_ + "/" + name_ + ".log"); }

void ServerProcess::Launch(const std::function<std::vector<std::string>(int port)>& argv_for,
                           const std::string& ready_path, double timeout_seconds) {
  for (int attempt = 1;; ++attempt) {
    const int port = FreeLoopbackPort();
    if (TryLaunch(argv_for(port), port, ready_path, timeout_seconds, attempt == 3)) return;
  }
}

bool ServerProcess::TryLaunch(const std::vector<std::string>& argv, int port, const std::string& ready_path,
                              double timeout_seconds, bool last) {
  const std::string log = dir_ + "/" + name_ + ".log";
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error(Errno("open " + log));
  try {
    pid_ = SpawnChild(argv, {}, log_fd);
  } catch (...) {
    close(log_fd);
    throw;
  }
  close(log_fd);
  port_ = port;
  reaped_ = false;
  exit_status_ = -1;

  const auto deadline = Deadline(timeout_seconds);
  std::string last_error = "no answer yet";
  while (Clock::now() < deadline) {
    if (!Running()) {
      const std::string output = Log();
      if (!last && output.find("address already in use") != std::string::npos) return false;
      throw std::runtime_error(name_ + " exited with status " + std::to_string(exit_status_) + " before " + ready_path +
                               " answered 200; log:\n" + LastLines(output, 60));
    }
    try {
      const HttpResponse response = HttpGet(url(ready_path), {}, 2);
      if (response.status == 200) return true;
      last_error = ready_path + " answered " + std::to_string(response.status);
    } catch (const std::exception& e) {
      last_error = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const int status = Stop();
  throw std::runtime_error(name_ + " not ready within " + std::to_string(timeout_seconds) + " s (" + last_error +
                           "); stopped with status " + std::to_string(status) + "; log:\n" + LastLines(Log(), 60));
}

bool ServerProcess::Running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return true;
  // r < 0: not our child any more; treat it as gone.
  exit_status_ = r == pid_ ? DecodeWaitStatus(status) : 128 + SIGKILL;
  reaped_ = true;
  return false;
}

int ServerProcess::Stop() {
  if (!Running()) return exit_status_;
  kill(pid_, SIGTERM);
  const auto deadline = Deadline(10);
  while (Clock::now() < deadline) {
    if (!Running()) return exit_status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_status_ = DecodeWaitStatus(status);
  reaped_ = true;
  return exit_status_;
}

}  // namespace detail

std::unique_ptr<PrometheusServer> PrometheusServer::Start(const Options& options) {
  auto process = std::make_unique<detail::ServerProcess>("prometheus");
  const std::string dir = process->dir();
  std::vector<std::string> rule_paths;
  std::filesystem::create_directories(dir + "/rules");
  for (size_t i = 0; i < options.rule_files.size(); ++i) {
    const std::filesystem::path source(options.rule_files[i]);
    if (!std::filesystem::is_regular_file(source)) throw std::runtime_error("no rule file " + source.string());
    // Numbered, so two files of the same name from different dirs both load.
    const std::string copy = dir + "/rules/" + std::to_string(i) + "-" + source.filename().string();
    std::filesystem::copy_file(source, copy);
    rule_paths.push_back(copy);
  }
  const std::string config = dir + "/prometheus.yml";
  std::ofstream(config) << ConfigYaml(options, rule_paths);

  process->Launch(
      [&](int port) {
        std::vector<std::string> argv{"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir + "/data",
                                      "--web.listen-address=127.0.0.1:" + std::to_string(port),
                                      "--rules.alert.resend-delay=1s"};
        argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
        return argv;
      },
      "/-/ready", 30);
  std::unique_ptr<PrometheusServer> server(new PrometheusServer(std::move(process)));
  server->rule_paths_ = rule_paths;
  return server;
}

PrometheusServer::PrometheusServer(std::unique_ptr<detail::ServerProcess> process) : process_(std::move(process)) {}

PrometheusServer::~PrometheusServer() = default;

int PrometheusServer::port() const { return process_->port(); }
pid_t PrometheusServer::pid() const { return process_->pid(); }
const std::string& PrometheusServer::dir() const { return process_->dir(); }
std::string PrometheusServer::url(const std::string& path) const { return process_->url(path); }
std::string PrometheusServer::Log() const { return process_->Log(); }

Json PrometheusServer::ApiData(const std::string& path) const {
  const HttpResponse response = HttpGet(url(path), {}, 10);
  Json envelope;
  try {
    envelope = Json::Parse(response.body);
  } catch (const std::exception& e) {
    throw std::runtime_error("GET " + path + " answered " + std::to_string(response.status) + " with " + e.what() +
                             ": " + response.body.substr(0, 500));
  }
  if (envelope["status"].str() != "success") {
    throw std::runtime_error("GET " + path + " answered " + std::to_string(response.status) + ": " +
                             envelope["errorType"].str() + ": " + envelope["error"].str());
  }
  return envelope["data"];
}

double PrometheusServer::QueryOne(const std::string& promql) const {
  const auto samples = Query(promql);
  return samples.size() == 1 ? samples[0].value : -1;
}

std::vector<PrometheusServer::Sample> PrometheusServer::Query(const std::string& promql) const {
  const Json data = ApiData("/api/v1/query?query=" + PercentEncode(promql));
  // A value is [unix time, "value"]; the value is a string so that NaN and +Inf survive JSON.
  const auto value_of = [](const Json& pair) {
    if (pair.items().size() != 2) throw std::runtime_error("query result value is not [time, value]");
    return std::strtod(pair.items()[1].str().c_str(), nullptr);
  };
  std::vector<Sample> samples;
  const std::string& type = data["resultType"].str();
  if (type == "scalar") {
    samples.push_back({{}, value_of(data["result"])});
  } else if (type == "vector") {
    for (const Json& item : data["result"].items()) {
      samples.push_back({item["metric"].StringMap(), value_of(item["value"])});
    }
  } else {
    throw std::runtime_error("query " + promql + " returned a " + type + ", not an instant vector or scalar");
  }
  return samples;
}

std::vector<PrometheusServer::Target> PrometheusServer::Targets() const {
  std::vector<Target> targets;
  const Json data = ApiData("/api/v1/targets?state=active");
  for (const Json& t : data["activeTargets"].items()) {
    targets.push_back({t["labels"]["job"].str(), t["scrapeUrl"].str(), t["health"].str(), t["lastError"].str()});
  }
  return targets;
}

::testing::AssertionResult PrometheusServer::WaitForTargetsUp(double timeout_seconds) const {
  const auto deadline = Deadline(timeout_seconds);
  std::string last = "no answer yet";
  while (true) {
    try {
      const std::vector<Target> targets = Targets();
      bool all_up = !targets.empty();
      last = targets.empty() ? "no active targets" : "";
      for (const auto& t : targets) {
        all_up = all_up && t.health == "up";
        last += "\n  " + t.job + " " + t.scrape_url + " " + t.health;
        if (!t.last_error.empty()) last += ": " + t.last_error;
      }
      if (all_up) return ::testing::AssertionSuccess();
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ::testing::AssertionFailure() << "targets not all up within " << timeout_seconds << " s: " << last;
}

std::vector<PrometheusServer::Alert> PrometheusServer::Alerts() const {
  std::vector<Alert> alerts;
  const Json data = ApiData("/api/v1/alerts");
  for (const Json& a : data["alerts"].items()) {
    alerts.push_back(
        {a["labels"]["alertname"].str(), a["state"].str(), a["labels"].StringMap(), a["annotations"].StringMap()});
  }
  return alerts;
}

::testing::AssertionResult PrometheusServer::WaitForAlert(const std::string& alertname, const std::string& state,
                                                          double timeout_seconds) const {
  const auto deadline = Deadline(timeout_seconds);
  std::string last = "no answer yet";
  while (true) {
    try {
      const std::vector<Alert> alerts = Alerts();
      for (const auto& alert : alerts) {
        if (alert.alertname == alertname && alert.state == state) {
          return ::testing::AssertionSuccess() << alertname << " " << state << " " << FormatLabels(alert.labels);
        }
      }
      last = DescribeAlerts(alerts);
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ::testing::AssertionFailure() << "alert " << alertname << " not " << state << " in Prometheus within "
                                       << timeout_seconds << " s; last seen: " << last;
}

int PrometheusServer::RuleGroupsLoaded() const {
  return static_cast<int>(ApiData("/api/v1/rules")["groups"].items().size());
}

namespace {

// A sample without labels from Prometheus's own /metrics; NaN when it is not there.
double OwnMetric(const PrometheusServer& prometheus, const std::string& name) {
  const HttpResponse response = HttpGet(prometheus.url("/metrics"), {}, 10);
  std::istringstream lines(response.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, name.size() + 1, name + " ") == 0) return std::strtod(line.c_str() + name.size() + 1, nullptr);
  }
  return std::nan("");
}

}  // namespace

::testing::AssertionResult PrometheusServer::ReloadRules(const std::vector<std::string>& rule_files,
                                                         double timeout_seconds) {
  if (rule_files.size() != rule_paths_.size()) {
    return ::testing::AssertionFailure() << "ReloadRules got " << rule_files.size() << " rule files, Start "
                                         << rule_paths_.size();
  }
  for (size_t i = 0; i < rule_files.size(); ++i) {
    std::error_code error;
    std::filesystem::copy_file(rule_files[i], rule_paths_[i], std::filesystem::copy_options::overwrite_existing, error);
    if (error) return ::testing::AssertionFailure() << "cannot copy " << rule_files[i] << ": " << error.message();
  }
  const char* const kSuccessTime = "prometheus_config_last_reload_success_timestamp_seconds";
  const double before = OwnMetric(*this, kSuccessTime);
  if (kill(pid(), SIGHUP) != 0) {
    return ::testing::AssertionFailure() << "kill -HUP prometheus: " << std::strerror(errno);
  }
  const auto deadline = Deadline(timeout_seconds);
  while (true) {
    try {
      if (OwnMetric(*this, kSuccessTime) > before) return ::testing::AssertionSuccess();
      if (OwnMetric(*this, "prometheus_config_last_reload_successful") == 0) {
        return ::testing::AssertionFailure() << "Prometheus could not reload its rules:\n" << LastLines(Log(), 20);
      }
    } catch (const std::exception& e) {
      if (Clock::now() >= deadline) return ::testing::AssertionFailure() << e.what();
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ::testing::AssertionFailure() << "Prometheus did not reload its rules within " << timeout_seconds << " s:\n"
                                       << LastLines(Log(), 20);
}

}  // namespace pgpulse::testing
