// Debian's prometheus-postgres-exporter (0.11.1 on Debian 12) serving one server, for differential tests.
//
// Not thread-safe: create and drive it from the test's own thread (the child gets SIGKILL when that thread exits).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pgpulse::testing {

class PostgresExporterProcess {
 public:
  static constexpr const char* kBinary = "/usr/bin/prometheus-postgres-exporter";
  // True when kBinary exists and is executable.
  static bool Installed();
  // Starts it with DATA_SOURCE_NAME=`uri` and its defaults, on a free loopback port, and waits up to 20 s for
  // /metrics to answer 200. Throws std::runtime_error with its log otherwise.
  static std::unique_ptr<PostgresExporterProcess> Start(const std::string& uri);
  // The same with `env` (DATA_SOURCE_*, PG_EXPORTER_*) in its environment and `args` after its listen address.
  static std::unique_ptr<PostgresExporterProcess> StartWith(const std::map<std::string, std::string>& env,
                                                            const std::vector<std::string>& args = {});

  // SIGTERM, then SIGKILL after 5 s; removes its dir (printing the log's tail first if the test failed).
  ~PostgresExporterProcess();
  PostgresExporterProcess(const PostgresExporterProcess&) = delete;
  PostgresExporterProcess& operator=(const PostgresExporterProcess&) = delete;

  // "http://127.0.0.1:PORT" + path.
  std::string url(const std::string& path) const;
  std::string Log() const;

 private:
  PostgresExporterProcess(std::string dir, int port, pid_t pid) : dir_(std::move(dir)), port_(port), pid_(pid) {}
  std::string dir_;
  int port_;
  pid_t pid_;
};

}  // namespace pgpulse::testing
