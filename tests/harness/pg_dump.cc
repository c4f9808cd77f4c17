#include "tests/harness/pg_dump.h"

#include <unistd.h>

#include <stdexcept>

namespace pgpulse::testing {

std::string PgClientProgram(const PostgresServer& pg, const std::string& name) {
  const int major = std::stoi(pg.Query("SHOW server_version_num")) / 10000;
  const std::string path = "/usr/lib/postgresql/" + std::to_string(major) + "/bin/" + name;
  return access(path.c_str(), X_OK) == 0 ? path : "";
}

void PgDump(const PostgresServer& pg, const std::string& file, const std::vector<std::string>& options) {
  const std::string program = PgClientProgram(pg, "pg_dump");
  if (program.empty()) throw std::runtime_error("no pg_dump of the server's major version is installed");
  std::vector<std::string> argv{program};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back("--dbname=" + pg.uri());
  argv.push_back("--file=" + file);
  const CommandResult r = RunCommand(argv);
  if (r.exit_status != 0) throw std::runtime_error("pg_dump into " + file + " failed: " + r.output);
}

}  // namespace pgpulse::testing
