#pragma once
// Small helpers the unit tests share: error lists as text, and throwaway files.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace pgpulse::testing {

// Error lists from the config and definition loaders, one per line, for assertion messages and
// substring checks.
inline std::string Joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& line : lines) s += line + "\n";
  return s;
}

// Writes `content` to a new file under /tmp (mode `mode`) and returns its path.
inline std::string WriteTempFile(const std::string& content, mode_t mode = 0600) {
  char path[] = "/tmp/pgpulse-unit-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << content;
  chmod(path, mode);
  return path;
}

}  // namespace pgpulse::testing
