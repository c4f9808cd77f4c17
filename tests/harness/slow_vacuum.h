#pragma once
// A manual VACUUM that stays in its heap scan for as long as a test needs: cost-based delay at its
// slowest (100 ms per page) on a table with dead rows. The destructor cancels it and waits for it.

#include <future>
#include <string>

#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {

class SlowVacuum {
 public:
  // Creates `table` (20,000 rows, every second one deleted, autovacuum off) and starts VACUUM on it
  // from a connection of its own.
  SlowVacuum(const PostgresServer& pg, const std::string& table);
  ~SlowVacuum();
  SlowVacuum(const SlowVacuum&) = delete;
  SlowVacuum& operator=(const SlowVacuum&) = delete;

  // Waits up to 15 s until pg_stat_progress_vacuum shows it scanning the heap.
  bool WaitScanning();
  int pid() const { return pid_; }

 private:
  const PostgresServer& pg_;
  int pid_ = 0;
  std::future<void> done_;
};

}  // namespace pgpulse::testing
