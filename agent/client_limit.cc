#include "agent/client_limit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace pgpulse::agent {
namespace {

// How long the reaper lets new connections gather before one scan looks at them all.
constexpr auto kReapBatch = std::chrono::milliseconds(10);

// The address as CivetWeb writes remote_addr ("a.b.c.d" or IPv6 text) and the port.
bool AddressOf(const sockaddr_storage& sa, std::string& text, int& port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    port = ntohs(in->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    port = ntohs(in6->sin6_port);
  } else {
    return false;
  }
  text = buf;
  return true;
}

}  // namespace

ClientLimiter::ClientLimiter(int max_per_client) : max_(max_per_client) {
  if (max_ > 0) reaper_ = std::thread([this] { ReapLoop(); });
}

ClientLimiter::~ClientLimiter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

void ClientLimiter::SetListenPorts(std::vector<int> ports) {
  std::lock_guard<std::mutex> lock(mu_);
  ports_ = std::move(ports);
}

void ClientLimiter::Accepted() {
  if (max_ <= 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (arrived_) return;  // a round is already due
    arrived_ = true;
  }
  wake_.notify_one();
}

bool ClientLimiter::Admit(const std::string& addr, int port) {
  if (max_ <= 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  int& held = held_[addr];
  if (held >= max_) {
    ++refused_;
    return false;
  }
  ++held;
  admitted_.emplace(addr, port);
  return true;
}

void ClientLimiter::Release(const std::string& addr, int port) {
  if (max_ <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  admitted_.erase({addr, port});
  auto it = held_.find(addr);
  if (it != held_.end() && --it->second <= 0) held_.erase(it);
}

uint64_t ClientLimiter::refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

void ClientLimiter::ReapLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || arrived_; });
    if (stopping_) return;
    lock.unlock();
    std::this_thread::sleep_for(kReapBatch);
    lock.lock();
    arrived_ = false;
    lock.unlock();
    Reap();
    lock.lock();
  }
}

// One pass over our open descriptors (only the reaper runs it). Sockets keep what their first
// sight found, so a long-lived connection costs an fstat per round, not two more system calls.
void ClientLimiter::Reap() {
  std::vector<int> ports;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ports = ports_;
  }
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  struct Open {
    int fd;
    unsigned long inode;
    Socket* socket;
  };
  std::map<std::string, std::vector<Open>> by_client;
  std::map<unsigned long, Socket> still_open;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    int fd = std::atoi(e->d_name);
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    Socket s;
    if (auto known = sockets_.find(st.st_ino); known != sockets_.end()) {
      s = known->second;
    } else {
      sockaddr_storage local{}, peer{};
      socklen_t llen = sizeof local, plen = sizeof peer;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) != 0 ||
          getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0)
        continue;
      std::string local_addr;
      int local_port = 0;
      if (!AddressOf(local, local_addr, local_port) || !AddressOf(peer, s.client, s.port)) continue;
      s.ours = std::find(ports.begin(), ports.end(), local_port) != ports.end();
      s.seen = ++sequence_;
    }
    Socket& kept = still_open[st.st_ino] = std::move(s);
    if (kept.ours && !kept.shut) by_client[kept.client].push_back(Open{fd, st.st_ino, &kept});
  }
  closedir(dir);

  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [client, open] : by_client) {
    if (open.size() <= static_cast<size_t>(max_)) continue;
    // Keep the admitted ones, then the oldest; shut the rest down.
    const std::string& address = client;  // (C++17 lambdas cannot capture a structured binding)
    auto admitted = [&](const Open& o) { return admitted_.count({address, o.socket->port}) > 0; };
    std::sort(open.begin(), open.end(), [&](const Open& a, const Open& b) {
      bool aa = admitted(a), ba = admitted(b);
      return aa != ba ? aa : a.socket->seen < b.socket->seen;
    });
    for (size_t i = static_cast<size_t>(max_); i < open.size(); ++i) {
      if (admitted(open[i])) continue;
      // The descriptor may have been closed and reused since the scan (by a connection from
      // someone else): a duplicate pins what it refers to now, and only the same socket is shut.
      int pinned = dup(open[i].fd);
      if (pinned < 0) continue;
      struct stat st {};
      if (fstat(pinned, &st) == 0 && st.st_ino == open[i].inode) {
        shutdown(pinned, SHUT_RDWR);
        open[i].socket->shut = true;
        ++refused_;
      }
      close(pinned);
    }
  }
  sockets_ = std::move(still_open);
}

}  // namespace pgpulse::agent
