// A throwaway HAProxy (the Debian package's /usr/sbin/haproxy) on 127.0.0.1, in TCP mode in front
// of PostgreSQL servers, each health-checked over HTTP at a pgpulse agent (option httpchk), for one
// test of the role endpoints.
//
// Its config and log in a /tmp dir of its own, a free loopback port, no privileges needed: in the
// foreground (-db) as this process's child, as OS user postgres when the test runs as root; the
// child gets SIGKILL when the starting thread exits. Not thread-safe: drive it from the test's thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace pgpulse::testing {

class HaproxyServer {
 public:
  static constexpr const char* kBinary = "/usr/sbin/haproxy";
  static bool Installed();

  struct Backend {
    std::string name;
    int port;        // the PostgreSQL server's
    int check_port;  // its agent's
  };
  // `check` is the health check's request line, e.g. "GET /primary". Checks every 300 ms; a server
  // is down after 2 failed checks and up after 1 good one, and its sessions are cut when it goes down.
  // Returns once HAProxy listens. Throws std::runtime_error with its log on failure.
  static std::unique_ptr<HaproxyServer> Start(const std::vector<Backend>& backends, const std::string& check);
  // Stops HAProxy and removes its dir; prints its log's tail first if the current test failed.
  ~HaproxyServer();
  HaproxyServer(const HaproxyServer&) = delete;
  HaproxyServer& operator=(const HaproxyServer&) = delete;

  int port() const { return port_; }
  // "host=127.0.0.1 port=PORT user=postgres dbname=postgres connect_timeout=2"
  std::string dsn() const;
  std::string Log() const;
  void Stop();  // SIGTERM, then SIGKILL after 5 s; idempotent

 private:
  HaproxyServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace pgpulse::testing
