#pragma once
// Starting child processes for tests and reading what they wrote, once for every harness class.

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace pgpulse::testing {

// Starts argv (argv[0] looked up in PATH) with stdout and stderr on output_fd,
// stdin on /dev/null, default signal dispositions, and `env` added to this
// process's environment less proxy variables (every server a test talks to is
// on loopback). The child gets SIGKILL when the thread that started it exits
// (PR_SET_PDEATHSIG). Throws std::runtime_error if it cannot fork.
pid_t SpawnChild(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env, int output_fd);

// Sends `signal` to `pid`, waits up to 5 s for it to exit, then SIGKILLs and reaps it; sets pid to -1.
// Does nothing when pid <= 0.
void StopChild(pid_t& pid, int signal);

// A waitpid status as a shell reports it: the exit code, or 128 + signal.
int DecodeWaitStatus(int status);

// A whole file (a child's log); "" when unreadable.
std::string ReadFile(const std::string& path);

// The last `count` lines of `text`, for failure messages.
std::string LastLines(const std::string& text, size_t count);

}  // namespace pgpulse::testing
