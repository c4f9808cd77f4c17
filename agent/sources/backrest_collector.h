#pragma once
// The pgBackRest collector of one target: runs `pgbackrest info` on a thread
// of its own, at most once per ttl, so a slow repository (remote, S3) delays
// at most the scrape that asked for a refresh, and never past its deadline.
//
// Threads: the target's worker calls Start/Collect (Refresh/Take); the collector's own thread
// runs the command. `mu_` guards the request flag and the last result; it is
// never held while the command runs.

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/sources/command.h"
#include "agent/config.h"
#include "agent/sources/source.h"
#include "collectors/family.h"

namespace pgpulse::agent {

struct BackrestResult {
  bool ok = false;
  std::string error;  // command failure, unusable output, or the stanza's status
  double duration_seconds = 0;
  std::chrono::steady_clock::time_point at;
  std::shared_ptr<const std::vector<collectors::Family>> families;
  size_t series = 0;
  uint64_t sequence = 0;  // counts runs, so a caller can tell a fresh result from one it has seen
};

class BackrestCollector : public sources::Source {
 public:
  static constexpr const char* kName = "pgbackrest";

  BackrestCollector(std::string target, BackrestConfig config, std::vector<std::pair<std::string, std::string>> labels);
  ~BackrestCollector() override;  // kills a running command, joins the thread
  BackrestCollector(const BackrestCollector&) = delete;
  BackrestCollector& operator=(const BackrestCollector&) = delete;

  // Starts a run unless one is running or the last result is younger than
  // ttl (a failed one: younger than min(ttl, 1m)). Returns whether it started one.
  bool Refresh();
  // The last result, after waiting until `until` for the run in flight, if any
  // (nullptr before the first run finishes). `running` says whether one still is.
  std::shared_ptr<const BackrestResult> Take(std::chrono::steady_clock::time_point until, bool& running);

  const BackrestConfig& config() const { return config_; }

  // sources::Source: Refresh at the start of a collection; only the collection that started a
  // run waits for it (until `until` less a margin), the others report the last result.
  void Start() override;
  sources::SourceOutcome Collect(const sources::SourceContext& context,
                                 std::chrono::steady_clock::time_point until) override;

 private:
  void Loop();

  const std::string target_;
  const BackrestConfig config_;
  const std::vector<std::pair<std::string, std::string>> labels_;
  std::atomic<bool> stopping_{false};  // also cancels a running command

  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;                      // guarded by mu_
  bool running_ = false;                        // guarded by mu_
  std::shared_ptr<const BackrestResult> last_;  // guarded by mu_
  uint64_t runs_ = 0;                           // collector thread only
  bool started_ = false;                        // by this collection's Start; target's worker only
  uint64_t seen_ = 0;                           // sequence of the last result reported; target's worker only
  std::thread thread_;
};

}  // namespace pgpulse::agent
