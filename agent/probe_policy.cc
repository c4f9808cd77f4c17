#include "agent/probe_policy.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>

namespace pgpulse::agent {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ParsePort(const std::string& s, int& port) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  port = std::stoi(s);
  return port > 0 && port <= 65535;
}

bool ValidName(const std::string& s) {
  return !s.empty() && s.size() <= 253 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") == std::string::npos && s.front() != '-' &&
         s.front() != '.';
}

}  // namespace

std::optional<AllowedTarget> ParseAllowedTarget(const std::string& text, std::string& error) {
  AllowedTarget t;
  t.text = text;
  std::string host = text;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string::npos) {
      error = "'" + text + "': '[' without ']'";
      return std::nullopt;
    }
    std::string rest = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!rest.empty() && (rest.front() != ':' || !ParsePort(rest.substr(1), t.port))) {
      error = "'" + text + "': expected a port from 1 to 65535 after ']:'";
      return std::nullopt;
    }
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    size_t colon = host.find(':');
    if (!ParsePort(host.substr(colon + 1), t.port)) {
      error = "'" + text + "': expected a port from 1 to 65535 after ':'";
      return std::nullopt;
    }
    host = host.substr(0, colon);
  }
  std::string bits;
  if (size_t slash = host.find('/'); slash != std::string::npos) {
    bits = host.substr(slash + 1);
    host = host.substr(0, slash);
  }
  if (inet_pton(AF_INET, host.c_str(), t.address.data()) == 1) {
    t.family = AF_INET;
    t.prefix = 32;
  } else if (inet_pton(AF_INET6, host.c_str(), t.address.data()) == 1) {
    t.family = AF_INET6;
    t.prefix = 128;
  } else if (bits.empty() && ValidName(Lower(host))) {
    t.name = Lower(host);
    return t;
  } else {
    error = "'" + text + "' is not a host name, an IP address or a network (10.0.0.0/8, [2001:db8::/32]:5432)";
    return std::nullopt;
  }
  if (!bits.empty()) {
    if (bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos || std::stoi(bits) > t.prefix) {
      error = "'" + text + "': prefix length must be 0 to " + std::to_string(t.prefix);
      return std::nullopt;
    }
    t.prefix = std::stoi(bits);
  }
  return t;
}

bool TargetAllowed(const std::vector<AllowedTarget>& allowed, const std::string& host, int port) {
  if (port == 0) port = 5432;
  std::array<unsigned char, 16> addr{};
  int family = 0;
  if (inet_pton(AF_INET, host.c_str(), addr.data()) == 1) family = AF_INET;
  else if (inet_pton(AF_INET6, host.c_str(), addr.data()) == 1) family = AF_INET6;
  const std::string name = Lower(host);
  for (const AllowedTarget& a : allowed) {
    if (a.port != 0 && a.port != port) continue;
    if (!a.name.empty()) {
      if (family == 0 && a.name == name) return true;
      continue;
    }
    if (a.family != family) continue;
    int full = a.prefix / 8, rest = a.prefix % 8;
    if (!std::equal(a.address.begin(), a.address.begin() + full, addr.begin())) continue;
    if (rest && ((a.address[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff)) continue;
    return true;
  }
  return false;
}

}  // namespace pgpulse::agent
