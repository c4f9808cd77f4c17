#pragma once
// Structured logging: one line per event, logfmt or JSON, secrets redacted.
// Thread-safe: any thread may log; AddSecret may be called at any time.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgpulse::agent {

enum class LogLevel { Debug, Info, Warn, Error };

using LogFields = std::vector<std::pair<std::string_view, std::string>>;

// Returns an error message for an unknown level or format, else "".
std::string InitLogging(const std::string& level, const std::string& format);

void Log(LogLevel level, std::string_view msg, const LogFields& fields = {});
inline void LogDebug(std::string_view m, const LogFields& f = {}) { Log(LogLevel::Debug, m, f); }
inline void LogInfo(std::string_view m, const LogFields& f = {}) { Log(LogLevel::Info, m, f); }
inline void LogWarn(std::string_view m, const LogFields& f = {}) { Log(LogLevel::Warn, m, f); }
inline void LogError(std::string_view m, const LogFields& f = {}) { Log(LogLevel::Error, m, f); }

// Registers a secret (a password) that must never appear in any output.
void AddSecret(const std::string& secret);
// Stops redacting a secret that is no longer used (a rotated password, see credentials.h).
void ForgetSecret(const std::string& secret);
// Replaces every registered secret in `text` with "[REDACTED]".
std::string Redact(std::string text);

}  // namespace pgpulse::agent
