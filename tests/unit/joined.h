#pragma once
// Error lists from the config and definition loaders, one per line, for assertion messages and
// substring checks.

#include <string>
#include <vector>

namespace pgpulse::testing {

inline std::string Joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& line : lines) s += line + "\n";
  return s;
}

}  // namespace pgpulse::testing
