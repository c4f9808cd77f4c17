// A temporary directory of a test's own, removed with everything in it however the test ends.
#pragma once

#include <string>

namespace pgpulse::testing {

class TempDir {
 public:
  // mkdtemp("/tmp/<stem>.XXXXXX"); throws std::runtime_error if it cannot be made.
  explicit TempDir(const std::string& stem);
  ~TempDir();  // rm -rf
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Sets a file's access and modification time to `unix_seconds` (utimensat); false on failure.
bool SetModifiedTime(const std::string& path, long long unix_seconds);

}  // namespace pgpulse::testing
