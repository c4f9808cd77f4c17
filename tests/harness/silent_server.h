#pragma once
// Listening sockets on loopback for tests of misbehaving servers. SilentServer: a loopback TCP
// port that accepts connections (into the kernel's backlog) and never answers:
// a connect to it waits for connect_timeout, PostgreSQL's protocol never starts. For tests of
// hung servers. Closed with the object.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace pgpulse::testing {

// A socket listening on a free loopback port (set in `port`); throws when it cannot.
inline int ListenOnLoopback(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot open a listening loopback socket");
  }
  port = ntohs(a.sin_port);
  return fd;
}

class SilentServer {
 public:
  SilentServer() : fd_(ListenOnLoopback(port_)) {}
  ~SilentServer() { close(fd_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  int fd_ = -1;
};

}  // namespace pgpulse::testing
