#include "tests/harness/agent_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/harness/http_client.h"
#include "tests/harness/spawn.h"

#ifndef PGPULSE_BINARY
#error "PGPULSE_BINARY must be defined as the path of the agent binary"
#endif

namespace pgpulse::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string MakeTempDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error(Errno("mkdtemp " + pattern));
  return pattern;
}

// Returns the decoded status, or -1 if the child is still running.
int TryReap(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid) return DecodeWaitStatus(status);
  if (r < 0) return 128 + SIGKILL;  // Not our child any more; treat as gone.
  return -1;
}

int Reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 128 + SIGKILL;
  }
  return DecodeWaitStatus(status);
}

// Parses the port out of "--web.listen-address=HOST:PORT" or "--web.listen-address HOST:PORT"; 0 if absent.
int ListenPortFromArgs(const std::vector<std::string>& args, bool* present) {
  const std::string flag = "--web.listen-address";
  *present = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    if (args[i] == flag && i + 1 < args.size()) {
      value = args[i + 1];
    } else if (args[i].rfind(flag + "=", 0) == 0) {
      value = args[i].substr(flag.size() + 1);
    } else {
      continue;
    }
    *present = true;
    const auto colon = value.rfind(':');
    try {
      return std::stoi(value.substr(colon == std::string::npos ? 0 : colon + 1));
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

}  // namespace

bool PromtoolInstalled() { return RunCommand({"sh", "-c", "command -v promtool"}, {}, 10).exit_status == 0; }

CommandResult RunCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                         double timeout_seconds) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(Errno("pipe2"));
  pid_t pid;
  try {
    pid = SpawnChild(argv, env, fds[1]);
  } catch (...) {
    close(fds[0]);
    close(fds[1]);
    throw;
  }
  close(fds[1]);

  CommandResult result;
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<long>(timeout_seconds * 1000));
  bool open = true;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      kill(pid, SIGKILL);
      result.output += "\n[harness: killed " + argv[0] + " after " + std::to_string(timeout_seconds) + " s]\n";
      result.exit_status = Reap(pid);
      break;
    }
    if (!open) {
      // Output closed but the process may linger; poll for its exit until the deadline.
      const int status = TryReap(pid);
      if (status >= 0) {
        result.exit_status = status;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    char buffer[8192];
    const ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n > 0) {
      result.output.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      open = false;
    }
  }
  close(fds[0]);
  return result;
}

std::unique_ptr<AgentProcess> AgentProcess::Start(std::vector<std::string> args,
                                                  std::map<std::string, std::string> env) {
  bool has_listen_address = false;
  int port = ListenPortFromArgs(args, &has_listen_address);
  if (has_listen_address) return StartOn(args, env, port);
  // The port was free a moment ago, but another test's outgoing connection may take it before the agent binds
  // (both come from the ephemeral range): then pick another, as PostgresServer does.
  for (int attempt = 1;; ++attempt) {
    port = FreeLoopbackPort();
    std::vector<std::string> with_port = args;
    with_port.push_back("--web.listen-address=127.0.0.1:" + std::to_string(port));
    try {
      return StartOn(with_port, env, port);
    } catch (const std::runtime_error& e) {
      if (attempt == 5 || std::string(e.what()).find("Address already in use") == std::string::npos) throw;
    }
  }
}

std::unique_ptr<AgentProcess> AgentProcess::StartOn(std::vector<std::string> args,
                                                    const std::map<std::string, std::string>& env, int port) {
  const std::string dir = MakeTempDir("pgpulse-agent");
  const std::string log = dir + "/agent.log";
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    std::filesystem::remove_all(dir);
    throw std::runtime_error(Errno("open " + log));
  }
  args.insert(args.begin(), PGPULSE_BINARY);
  pid_t pid;
  try {
    pid = SpawnChild(args, env, log_fd);
  } catch (...) {
    close(log_fd);
    std::filesystem::remove_all(dir);
    throw;
  }
  close(log_fd);
  std::unique_ptr<AgentProcess> agent(new AgentProcess(dir, port, pid));
  agent->WaitHealthy();
  return agent;
}

CommandResult AgentProcess::Run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                                double timeout_seconds) {
  std::vector<std::string> argv{PGPULSE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, env, timeout_seconds);
}

AgentProcess::AgentProcess(std::string dir, int port, pid_t pid) : dir_(std::move(dir)), port_(port), pid_(pid) {}

AgentProcess::~AgentProcess() {
  Stop();
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- agent log (last 100 lines) " << dir_ << "/agent.log ----\n"
              << LastLines(Log(), 100) << "---- end of agent log ----" << std::endl;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string AgentProcess::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void AgentProcess::WaitHealthy() {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  std::string last_error = "no answer yet";
  while (Clock::now() < deadline) {
    if (!Running()) {
      throw std::runtime_error("agent exited with status " + std::to_string(exit_status_) +
                               " before /healthz answered 200; log:\n" + Log());
    }
    // With TLS (--web.config.file) plain HTTP gets no answer: the agent's own
    // "listening" line, written once its server is up, says the same.
    const std::string log = Log();
    if (log.find("msg=\"listening\"") != std::string::npos || log.find("\"msg\":\"listening\"") != std::string::npos)
      return;
    try {
      const HttpResponse response = HttpGet(url("/healthz"), {}, 2);
      if (response.status == 200) return;
      last_error = "/healthz answered " + std::to_string(response.status);
    } catch (const std::exception& e) {
      last_error = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const int status = Stop();
  throw std::runtime_error("agent not healthy within 20 s (" + last_error + "); stopped with status " +
                           std::to_string(status) + "; log:\n" + Log());
}

void AgentProcess::Signal(int sig) {
  if (!reaped_ && kill(pid_, sig) != 0) throw std::runtime_error(Errno("kill " + std::to_string(pid_)));
}

bool AgentProcess::Running() {
  if (reaped_) return false;
  const int status = TryReap(pid_);
  if (status < 0) return true;
  exit_status_ = status;
  reaped_ = true;
  return false;
}

int AgentProcess::Stop() {
  if (!Running()) return exit_status_;
  kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (!Running()) return exit_status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  exit_status_ = Reap(pid_);
  reaped_ = true;
  return exit_status_;
}

std::string AgentProcess::Log() const { return ReadFile(dir_ + "/agent.log"); }

std::string WriteTempFile(const std::string& name, const std::string& content) {
  static std::mutex mutex;
  static std::string dir;
  std::lock_guard<std::mutex> lock(mutex);
  if (dir.empty()) {
    dir = MakeTempDir("pgpulse-files");
    // Readable by the postgres OS user too, for server-side reads when tests run as root.
    chmod(dir.c_str(), 0755);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    });
  }
  const std::filesystem::path path = std::filesystem::path(dir) / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path.string());
  return path.string();
}

std::string WriteConfigWithDefinitions(const std::string& name, const std::string& dsn,
                                       const std::string& definitions_file, const std::string& target_lines) {
  return WriteTempFile(name, "targets:\n  - name: main\n    dsn: \"" + dsn + "\"\n" + target_lines +
                                 "collectors:\n  directories: [\"" +
                                 definitions_file.substr(0, definitions_file.rfind('/')) + "\"]\n");
}

}  // namespace pgpulse::testing
