#include "agent/web_config.h"

#include <crypt.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "collectors/yaml_reader.h"

namespace pgpulse::agent {

namespace {

using collectors::YamlReader;

bool Readable(const std::string& path) { return std::ifstream(path).good(); }

void ParseTls(const YAML::Node& tls, YamlReader& r, WebConfig& into) {
  if (!r.Map(tls, "tls_server_config", {"cert_file", "key_file", "min_version"})) return;
  into.tls = true;
  for (const char* key : {"cert_file", "key_file"}) {
    const YAML::Node v = tls[key];
    if (!v || !v.IsScalar() || v.Scalar().empty()) {
      r.Error(v ? v : tls, std::string("tls_server_config.") + key + " is required");
      continue;
    }
    (std::string(key) == "cert_file" ? into.cert_file : into.key_file) = v.Scalar();
    if (!Readable(v.Scalar()))
      r.Error(v, std::string("tls_server_config.") + key + ": cannot read '" + v.Scalar() + "'");
  }
  if (const YAML::Node v = tls["min_version"]) {
    std::string s = v.IsScalar() ? v.Scalar() : "";
    if (s != "TLS10" && s != "TLS11" && s != "TLS12" && s != "TLS13")
      r.Error(v, "tls_server_config.min_version must be TLS10, TLS11, TLS12 or TLS13");
    else into.min_version = s;
  }
}

void ParseUsers(const YAML::Node& users, YamlReader& r, WebConfig& into) {
  if (!users.IsMap()) {
    r.Error(users, "basic_auth_users must map user names to bcrypt hashes");
    return;
  }
  for (auto it = users.begin(); it != users.end(); ++it) {
    std::string user = it->first.IsScalar() ? it->first.Scalar() : "";
    std::string hash = it->second.IsScalar() ? it->second.Scalar() : "";
    if (user.empty() || user.find(':') != std::string::npos)
      r.Error(it->first, "basic_auth_users: invalid user name '" + user + "'");
    if (hash.size() < 4 || hash[0] != '$' || hash[1] != '2')
      r.Error(it->second, "basic_auth_users." + user + ": expected a bcrypt hash ($2a$, $2b$ or $2y$)");
    into.users[user] = hash;
  }
}

}  // namespace

WebConfigResult ReloadWebConfig(const std::string& path, const WebConfig& running) {
  WebConfigResult now = LoadWebConfig(path);
  if (!now.ok()) return now;
  const WebConfig& n = now.config;
  if (n.tls != running.tls || n.cert_file != running.cert_file || n.key_file != running.key_file ||
      n.min_version != running.min_version)
    now.errors.push_back(path +
                         ": tls_server_config changed since pgpulse started; the listener is set up at start: "
                         "restart pgpulse to apply it, or restore it to reload the rest (basic_auth_users "
                         "changes apply on reload)");
  return now;
}

WebConfigResult LoadWebConfig(const std::string& path) {
  WebConfigResult r;
  std::ifstream in(path);
  if (!in) {
    r.errors.push_back(path + ": cannot read web config file: " + std::strerror(errno));
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  YamlReader reader(path, r.errors);
  std::optional<YAML::Node> root = reader.Load(ss.str());
  if (!root || root->IsNull()) return r;
  // Other exporter-toolkit keys (http_server_config, ...) are refused rather than ignored.
  if (!reader.Map(*root, "web config", {"tls_server_config", "basic_auth_users"})) return r;
  if (const YAML::Node tls = (*root)["tls_server_config"]) ParseTls(tls, reader, r.config);
  if (const YAML::Node users = (*root)["basic_auth_users"]) ParseUsers(users, reader, r.config);
  return r;
}

std::string Base64Decode(const std::string& in, bool& ok) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int bits = 0;
  uint32_t value = 0;  // holds fewer than 8 pending bits between bytes
  ok = true;
  size_t padding = 0;
  for (char c : in) {
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) {
      ok = false;
      return "";
    }
    size_t d = alphabet.find(c);
    if (d == std::string::npos) {
      ok = false;
      return "";
    }
    value = ((value << 6) | static_cast<uint32_t>(d)) & 0x3fff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((value >> bits) & 0xff));
      value &= (1u << bits) - 1;
    }
  }
  if (padding > 2) ok = false;
  return out;
}

BasicAuth::BasicAuth(std::map<std::string, std::string> users) : users_(std::move(users)) {
  int cost = -1;
  for (const auto& [user, hash] : users_) {
    // "$2y$10$" + 22 salt characters + 31 hash characters.
    if (hash.size() < 29 || hash[3] != '$' || hash[6] != '$') continue;
    int c = (hash[4] - '0') * 10 + (hash[5] - '0');
    if (c > cost) {
      cost = c;
      dummy_setting_ = hash.substr(0, 29);
    }
  }
}

bool BasicAuth::Allows(const char* header) {
  if (!header) return false;
  std::string h = header;
  if (h.size() < 6 || strncasecmp(h.c_str(), "Basic ", 6) != 0) return false;
  bool ok = false;
  std::string decoded = Base64Decode(h.substr(6), ok);
  size_t colon = decoded.find(':');
  if (!ok || colon == std::string::npos) return false;
  std::string user = decoded.substr(0, colon), password = decoded.substr(colon + 1);
  auto u = users_.find(user);
  if (u == users_.end()) {
    if (!dummy_setting_.empty()) {
      auto data = std::make_unique<crypt_data>();  // zeroed; 32 KiB, too large for CivetWeb's worker stacks
      crypt_r(password.c_str(), dummy_setting_.c_str(), data.get());
    }
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (verified_.count(decoded)) return true;
  }
  auto data = std::make_unique<crypt_data>();
  const char* result = crypt_r(password.c_str(), u->second.c_str(), data.get());
  if (!result || result[0] == '*') return false;
  // Compare without an early exit, so timing says nothing about the hash.
  const std::string& want = u->second;
  size_t n = std::strlen(result);
  unsigned diff = n == want.size() ? 0 : 1;
  for (size_t i = 0; i < n && i < want.size(); ++i) diff |= static_cast<unsigned char>(result[i] ^ want[i]);
  if (diff != 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (verified_.size() < 1024) verified_.insert(decoded);
  return true;
}

}  // namespace pgpulse::agent
