#pragma once
// --web.config.file: TLS and basic authentication for the HTTP endpoints, in
// the Prometheus exporter-toolkit format, so existing files work unchanged.

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace pgpulse::agent {

struct WebConfig {
  bool tls = false;
  std::string cert_file;
  std::string key_file;
  std::string min_version = "TLS12";         // TLS10, TLS11, TLS12, TLS13
  std::map<std::string, std::string> users;  // name -> bcrypt hash
  bool operator==(const WebConfig& o) const {
    return tls == o.tls && cert_file == o.cert_file && key_file == o.key_file && min_version == o.min_version &&
           users == o.users;
  }
};

struct WebConfigResult {
  WebConfig config;
  std::vector<std::string> errors;  // "file:line:col: what"
  bool ok() const { return errors.empty(); }
};

WebConfigResult LoadWebConfig(const std::string& path);

// On a reload (SIGHUP or POST /-/reload): the file read again. Users (basic_auth_users) apply at
// once; turning TLS on or off, or changing its file paths or min_version, needs a restart (the
// listener is set up at start), so such a file is refused with errors saying so, as is one that
// no longer loads (a missing or unreadable certificate or key included).
WebConfigResult ReloadWebConfig(const std::string& path, const WebConfig& running);

// Checks "Authorization: Basic ..." against bcrypt hashes. bcrypt is slow on
// purpose, so credentials that verified once are remembered (a bounded set).
// Thread-safe.
class BasicAuth {
 public:
  explicit BasicAuth(std::map<std::string, std::string> users);
  bool enabled() const { return !users_.empty(); }
  bool Allows(const char* authorization_header);

 private:
  const std::map<std::string, std::string> users_;
  // The costliest configured hash's "$2y$NN$salt": an unknown user's password is hashed with
  // it too, so the answer takes as long as for a known user and says nothing about names.
  std::string dummy_setting_;
  std::mutex mu_;
  std::set<std::string> verified_;  // "user:password" that matched; guarded by mu_
};

std::string Base64Decode(const std::string& in, bool& ok);

}  // namespace pgpulse::agent
