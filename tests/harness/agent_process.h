// Child processes for tests: the pgpulse agent serving HTTP, and commands run to completion.
//
// Not thread-safe: create and drive each object from one thread. Children get SIGKILL when the thread
// that started them exits (PR_SET_PDEATHSIG), so start them from the test's own thread, not a helper thread.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pgpulse::testing {

struct CommandResult {
  // The exit code, or 128 + signal number if the process was killed (as in a shell).
  int exit_status = -1;
  // stdout and stderr interleaved.
  std::string output;
};

// Runs argv (argv[0] looked up in PATH) with env added to this process's environment.
// The child is killed after timeout_seconds; then exit_status is 137 and output says so.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                         double timeout_seconds = 120);

// True when promtool (Debian package prometheus) is on PATH. Tests that lint a scrape with it skip that
// step without it: PGPULSE_SKIP_WITHOUT_PROMTOOL() at that point (the test's earlier assertions still count).
bool PromtoolInstalled();
#define PGPULSE_SKIP_WITHOUT_PROMTOOL()                                                                \
  if (!::pgpulse::testing::PromtoolInstalled())                                                        \
  GTEST_SKIP() << "promtool is not installed (Debian package prometheus; tests/deps.sh installs it): " \
                  "lint of the scrape skipped"

// The agent binary (PGPULSE_BINARY) running with its stdout+stderr in a log file of its own temp dir.
class AgentProcess {
 public:
  // Adds --web.listen-address=127.0.0.1:<free port> unless args set --web.listen-address, then waits up to
  // 20 s for GET /healthz to answer 200. Throws std::runtime_error with the log if the agent exits first
  // or never gets healthy.
  static std::unique_ptr<AgentProcess> Start(std::vector<std::string> args,
                                             std::map<std::string, std::string> env = {});

  // Runs the agent to completion, for modes that exit (--version, invalid flags or config, ...).
  static CommandResult Run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                           double timeout_seconds = 60);

  // Stops the agent and removes the log; prints the log's tail first if the current test failed.
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // "http://127.0.0.1:PORT" + path; path starts with '/'.
  std::string url(const std::string& path = "/") const;

  void Signal(int sig);
  // SIGTERM, up to 10 s grace, then SIGKILL. Returns the exit status as in CommandResult; idempotent.
  int Stop();
  bool Running();
  std::string Log() const;

 private:
  // Start with `args` already naming 127.0.0.1:port.
  static std::unique_ptr<AgentProcess> StartOn(std::vector<std::string> args,
                                               const std::map<std::string, std::string>& env, int port);
  AgentProcess(std::string dir, int port, pid_t pid);
  void WaitHealthy();

  std::string dir_;
  int port_;
  pid_t pid_;
  int exit_status_ = -1;
  bool reaped_ = false;
};

// Writes content to NAME in a per-process temp dir (removed at exit) and returns the path.
// Writing the same name again replaces the file.
std::string WriteTempFile(const std::string& name, const std::string& content);

// Writes (with WriteTempFile, as NAME) a config with one target "main" on `dsn`, `target_lines`
// (indented 4 spaces) under it, and the directory of `definitions_file` (a path WriteTempFile
// returned) as extra collector definitions. Returns the config's path.
std::string WriteConfigWithDefinitions(const std::string& name, const std::string& dsn,
                                       const std::string& definitions_file, const std::string& target_lines = "");

}  // namespace pgpulse::testing
