#pragma once
// Where an auth module's credentials may go: the `allowed_targets` of an auth module
// (host names, IP addresses and CIDR networks, each with an optional port) and the check
// of a /probe address against them. Pure functions; any thread.

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace pgpulse::agent {

struct AllowedTarget {
  std::string name;  // a DNS name (lower case), or "" for an address/network
  int family = 0;    // AF_INET or AF_INET6 for an address/network
  std::array<unsigned char, 16> address{};
  int prefix = 0;    // bits of `address` that must match
  int port = 0;      // 0 = any port
  std::string text;  // as written, for messages
  bool operator==(const AllowedTarget& o) const { return text == o.text; }
};

// "db7.example", "db7.example:5432", "10.1.2.3", "10.0.0.0/8", "10.0.0.0/8:5432", "::1",
// "[2001:db8::/32]:5432". nullopt with `error` set when malformed.
std::optional<AllowedTarget> ParseAllowedTarget(const std::string& text, std::string& error);

// Whether `host` (a DNS name or an IP literal, as a /probe target gives it) and `port`
// (0 = the default, 5432) match one entry. A name matches only the same name: it is never
// resolved to be checked, so names not listed are never looked up.
bool TargetAllowed(const std::vector<AllowedTarget>& allowed, const std::string& host, int port);

}  // namespace pgpulse::agent
