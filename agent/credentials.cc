#include "agent/credentials.h"

#include <deque>
#include <map>
#include <mutex>

#include "agent/sources/command.h"
#include "agent/dsn.h"
#include "agent/log.h"

namespace pgpulse::agent {

namespace {

// A token that rotates every 15 minutes would otherwise grow the log's secret list forever:
// per source, the redaction keeps the passwords still in use (the newest and the one before,
// which open connections may have been made with) and forgets older ones.
constexpr size_t kSecretsKeptPerSource = 2;
constexpr size_t kMaxCommandOutput = 64 * 1024;

std::mutex rotated_mu;
std::map<std::string, std::deque<std::string>> rotated;  // source -> passwords, oldest first; guarded

void Remember(const std::string& source, const std::string& password) {
  AddSecret(password);
  std::lock_guard<std::mutex> lock(rotated_mu);
  std::deque<std::string>& seen = rotated[source];
  if (!seen.empty() && seen.back() == password) return;
  seen.push_back(password);
  while (seen.size() > kSecretsKeptPerSource) {
    bool still_used = false;
    for (const auto& [other, passwords] : rotated) {
      if (other == source) continue;
      for (const std::string& p : passwords) still_used = still_used || p == seen.front();
    }
    if (!still_used) ForgetSecret(seen.front());
    seen.pop_front();
  }
}

std::string CommandName(const TargetConfig& config) { return "password_command " + config.password_command[0]; }

std::string RunPasswordCommand(const TargetConfig& config) {
  CommandOutcome r = RunCommand(config.password_command, config.password_command_timeout, kMaxCommandOutput);
  if (!r.ok()) {
    // r.error holds the command's stderr (its stdout, which may hold a password, is never shown).
    LogWarn("password command failed", {{"target", config.name}, {"error", Redact(r.error)}});
    throw CredentialError("target '" + config.name + "': " + CommandName(config) + ": " + Redact(r.error));
  }
  std::string line = r.out.substr(0, r.out.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty())
    throw CredentialError("target '" + config.name + "': " + CommandName(config) +
                          " printed no password (its first line of output is empty)");
  return line;
}

}  // namespace

bool HasRotatingPassword(const TargetConfig& config) {
  return !config.password_command.empty() || !config.password_file.empty();
}

std::string ConninfoForNewConnection(const TargetConfig& config, const std::string& conninfo) {
  std::string password, source;
  if (!config.password_command.empty()) {
    password = RunPasswordCommand(config);
    source = "command:" + config.name;
  } else if (!config.password_file.empty()) {
    std::string error;
    auto p = ReadPasswordFile(config.password_file, error);
    if (!p) throw CredentialError("target '" + config.name + "': " + error);
    password = *p;
    source = "file:" + config.password_file;
  } else {
    return conninfo;
  }
  Remember(source, password);
  // libpq takes the last of a repeated keyword: this replaces the password read at load.
  return conninfo + " " + BuildConninfo({{"password", password}});
}

bool IsAuthenticationFailure(const std::string& error_text) {
  return error_text.find("password authentication failed") != std::string::npos ||
         error_text.find("PAM authentication failed") != std::string::npos ||
         error_text.find("28P01") != std::string::npos;
}

bool RetryAfterAuthenticationFailure(const TargetConfig& config, const std::string& error_text) {
  if (!HasRotatingPassword(config) || !IsAuthenticationFailure(error_text)) return false;
  LogInfo(
      "password refused; reading it again and retrying once",
      {{"target", config.name}, {"source", config.password_command.empty() ? "password_file" : "password_command"}});
  return true;
}

}  // namespace pgpulse::agent
