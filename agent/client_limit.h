#pragma once
// The cap on connections one client address may hold on the HTTP listener.
//
// CivetWeb gives a connection to a worker before its request is read and says nothing about it
// there (not even its address), nor lets us close it. So the cap is kept in two places:
//  - a connection's first request checks in (Admit): over its address's cap, the handler answers
//    503 without doing any work and the connection closes;
//  - a reaper thread, woken by new connections, looks at every socket on our ports (one scan of
//    /proc/self/fd per round, however many connections arrived) and shuts down, per address over
//    the cap, the newest connections that have not checked in. That frees the workers a client
//    holds by never finishing its requests; a shut socket makes the worker's read fail at once.
// A client that reconnects in a tight loop (wrk, a broken load balancer) therefore costs a map
// lookup per connection and a share of a batched scan, and a scraper from another address does
// not queue behind per-connection scans.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pgpulse::agent {

class ClientLimiter {
 public:
  // `max_per_client` <= 0: no cap (Admit always says yes and no thread runs).
  explicit ClientLimiter(int max_per_client);
  ~ClientLimiter();
  ClientLimiter(const ClientLimiter&) = delete;
  ClientLimiter& operator=(const ClientLimiter&) = delete;

  // The listener's ports: only sockets accepted on them are counted or shut down.
  void SetListenPorts(std::vector<int> ports);
  // A connection was accepted (its address is not known yet): the reaper looks soon.
  void Accepted();
  // A connection's first request, from addr:port. True: admitted, held until Release. False: over
  // the cap (answer it without work and close it).
  bool Admit(const std::string& addr, int port);
  void Release(const std::string& addr, int port);
  uint64_t refused() const;

 private:
  void ReapLoop();
  void Reap();

  const int max_;
  mutable std::mutex mu_;  // guards what follows
  std::condition_variable wake_;
  std::vector<int> ports_;
  std::map<std::string, int> held_;                 // admitted connections per address
  std::set<std::pair<std::string, int>> admitted_;  // address, port of each admitted connection
  bool arrived_ = false;                            // connections accepted since the last round
  bool stopping_ = false;
  uint64_t refused_ = 0;
  // The reaper's own state: what each socket (by inode) was at its first sight.
  struct Socket {
    bool ours = false;
    bool shut = false;  // shut down by an earlier round, not yet closed
    std::string client;
    int port = 0;
    uint64_t seen = 0;  // order of first sight: higher is newer
  };
  std::map<unsigned long, Socket> sockets_;
  uint64_t sequence_ = 0;
  std::thread reaper_;
};

}  // namespace pgpulse::agent
