#include "tests/harness/temp_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "tests/harness/agent_process.h"

namespace pgpulse::testing {

TempDir::TempDir(const std::string& stem) {
  std::string tmpl = "/tmp/" + stem + ".XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() { RunCommand({"rm", "-rf", path_}); }

bool SetModifiedTime(const std::string& path, long long unix_seconds) {
  const timespec times[2] = {{static_cast<time_t>(unix_seconds), 0}, {static_cast<time_t>(unix_seconds), 0}};
  return utimensat(AT_FDCWD, path.c_str(), times, 0) == 0;
}

}  // namespace pgpulse::testing
