#pragma once
// Runs an external program (argv, never a shell) with a timeout, capturing
// its output: for collectors that read a tool's report (pgbackrest info).
//
// Thread-safe: each call is independent. Any thread may set `cancel` to make a
// running call kill its child and return early (used at shutdown).

#include <atomic>
#include <string>
#include <vector>

#include "collectors/duration.h"

namespace pgpulse::agent {

struct CommandOutcome {
  bool started = false;    // false: could not be spawned (see error)
  bool timed_out = false;  // killed at the timeout (or cancelled)
  int exit_code = -1;      // when it exited
  int signal = 0;          // when a signal ended it
  std::string out;         // stdout, at most max_output bytes
  std::string err;         // stderr, at most max_output bytes
  bool truncated = false;  // stdout or stderr was longer
  std::string error;       // "" when it ran and exited 0; else what went wrong, stderr included
  double duration_seconds = 0;
  bool ok() const { return error.empty(); }
};

// Starts argv[0] (an absolute path) with argv, stdin on /dev/null, stdout and
// stderr on pipes, default signal handling, in a process group of its own.
// At `timeout` (or when *cancel becomes true) the whole group gets SIGKILL.
CommandOutcome RunCommand(const std::vector<std::string>& argv, collectors::Millis timeout, size_t max_output,
                          const std::atomic<bool>* cancel = nullptr);

}  // namespace pgpulse::agent
