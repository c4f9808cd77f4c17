#include "tests/harness/haproxy_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "tests/harness/http_client.h"
#include "tests/harness/spawn.h"

namespace pgpulse::testing {
namespace {

bool Listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string Config(const std::vector<HaproxyServer::Backend>& backends, const std::string& check, int port) {
  std::string c =
      "global\n"
      "  maxconn 100\n"
      "defaults\n"
      "  mode tcp\n"
      "  timeout connect 2s\n"
      "  timeout client 60s\n"
      "  timeout server 60s\n"
      "  timeout check 3s\n"
      "listen postgres\n"
      "  bind 127.0.0.1:" +
      std::to_string(port) +
      "\n"
      "  option httpchk " +
      check +
      "\n"
      "  http-check expect status 200\n"
      "  default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions\n";
  for (const auto& b : backends)
    c += "  server " + b.name + " 127.0.0.1:" + std::to_string(b.port) + " check port " + std::to_string(b.check_port) +
         "\n";
  return c;
}

}  // namespace

bool HaproxyServer::Installed() { return access(kBinary, X_OK) == 0; }

std::unique_ptr<HaproxyServer> HaproxyServer::Start(const std::vector<Backend>& backends, const std::string& check) {
  if (!Installed()) throw std::runtime_error(std::string(kBinary) + " not found: apt-get install haproxy");
  std::string dir = "/tmp/pgpulse-haproxy-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  chmod(dir.c_str(), 0755);
  std::unique_ptr<HaproxyServer> server(new HaproxyServer(dir, FreeLoopbackPort()));
  const std::string cfg = dir + "/haproxy.cfg";
  std::ofstream(cfg) << Config(backends, check, server->port_);
  chmod(cfg.c_str(), 0644);
  const std::string log = dir + "/haproxy.log";
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + log + ": " + std::strerror(errno));
  std::vector<std::string> argv{kBinary, "-db", "-f", cfg};
  // Nothing here needs root: run it as an ordinary user (setpriv execs it, staying out of the way).
  if (geteuid() == 0 && getpwnam("postgres"))
    argv.insert(argv.begin(), {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"});
  server->pid_ = SpawnChild(argv, {}, fd);
  close(fd);
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(server->pid_, &status, WNOHANG) == server->pid_) {
      server->pid_ = -1;
      throw std::runtime_error("haproxy exited (status " + std::to_string(DecodeWaitStatus(status)) + "):\n" +
                               LastLines(server->Log(), 30));
    }
    if (Listening(server->port_)) return server;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("haproxy did not listen within 10 s:\n" + LastLines(server->Log(), 30));
}

HaproxyServer::~HaproxyServer() {
  if (::testing::Test::HasFailure())
    std::cerr << "---- haproxy log (tail) " << dir_ << "/haproxy.log ----\n"
              << LastLines(Log(), 40) << "---- end of haproxy log ----" << std::endl;
  Stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string HaproxyServer::dsn() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres connect_timeout=2";
}

std::string HaproxyServer::Log() const { return ReadFile(dir_ + "/haproxy.log"); }

void HaproxyServer::Stop() { StopChild(pid_, SIGTERM); }

}  // namespace pgpulse::testing
