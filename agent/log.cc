#include "agent/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <set>

namespace pgpulse::agent {

namespace {

std::mutex secrets_mu;
std::set<std::string> secrets;
bool json_format = false;

std::shared_ptr<spdlog::logger> Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("pgpulse", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::debug);
    return l;
  }();
  return logger;
}

bool NeedsQuoting(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

void AppendQuoted(std::string& out, std::string_view v, bool json) {
  out.push_back('"');
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, json ? "\\u%04x" : "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

spdlog::level::level_enum ToSpd(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return spdlog::level::debug;
    case LogLevel::Info: return spdlog::level::info;
    case LogLevel::Warn: return spdlog::level::warn;
    case LogLevel::Error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

}  // namespace

std::string InitLogging(const std::string& level, const std::string& format) {
  spdlog::level::level_enum lvl;
  if (level == "debug") lvl = spdlog::level::debug;
  else if (level == "info") lvl = spdlog::level::info;
  else if (level == "warn") lvl = spdlog::level::warn;
  else if (level == "error") lvl = spdlog::level::err;
  else return "--log.level: unknown level '" + level + "' (debug, info, warn, error)";
  if (format == "logfmt") json_format = false;
  else if (format == "json") json_format = true;
  else return "--log.format: unknown format '" + format + "' (logfmt, json)";
  Logger()->set_level(lvl);
  return "";
}

void AddSecret(const std::string& secret) {
  if (secret.empty()) return;
  std::lock_guard<std::mutex> lock(secrets_mu);
  secrets.insert(secret);
}

void ForgetSecret(const std::string& secret) {
  std::lock_guard<std::mutex> lock(secrets_mu);
  secrets.erase(secret);
}

std::string Redact(std::string text) {
  std::lock_guard<std::mutex> lock(secrets_mu);
  for (const std::string& s : secrets) {
    for (size_t pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos)) {
      text.replace(pos, s.size(), "[REDACTED]");
      pos += 10;
    }
  }
  return text;
}

void Log(LogLevel level, std::string_view msg, const LogFields& fields) {
  auto logger = Logger();
  if (!logger->should_log(ToSpd(level))) return;
  // Redact the raw values too: escaping could otherwise hide a secret from the final pass.
  const std::string clean_msg = Redact(std::string(msg));
  LogFields clean;
  clean.reserve(fields.size());
  for (const auto& [k, v] : fields) clean.emplace_back(k, Redact(v));
  msg = clean_msg;
  std::string line;
  if (json_format) {
    line = "{\"ts\":\"" + Timestamp() + "\",\"level\":\"" + LevelName(level) + "\",\"msg\":";
    AppendQuoted(line, msg, true);
    for (const auto& [k, v] : clean) {
      line += ",";
      AppendQuoted(line, k, true);
      line += ":";
      AppendQuoted(line, v, true);
    }
    line += "}";
  } else {
    line = "ts=" + Timestamp() + " level=" + LevelName(level) + " msg=";
    AppendQuoted(line, msg, false);
    for (const auto& [k, v] : clean) {
      line += " ";
      line += k;
      line += "=";
      if (NeedsQuoting(v)) AppendQuoted(line, v, false);
      else line += v;
    }
  }
  logger->log(ToSpd(level), "{}", Redact(std::move(line)));
}

}  // namespace pgpulse::agent
