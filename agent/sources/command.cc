#include "agent/sources/command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "collectors/text.h"

extern char** environ;

namespace pgpulse::agent {

namespace {

using Clock = std::chrono::steady_clock;

// Output a hung child's grandchildren (outside its group) may keep open; don't wait for it forever.
constexpr std::chrono::milliseconds kDrainAfterExit{500};
constexpr int kPollStepMs = 100;

struct Fd {
  int fd = -1;
  ~Fd() { Close(); }
  void Close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Starts argv[0] in a process group of its own with stdin from /dev/null and stdout/stderr into
// the pipes' write ends; returns its pid, or -1 with `error` set.
pid_t Spawn(const std::vector<std::string>& argv, const Fd& out_w, const Fd& err_w, std::string& error) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.fd, 2);
  // Nothing of the agent's (sockets, connections) leaks into the child.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The agent blocks SIGHUP/SIGTERM/SIGINT for sigwait and ignores SIGPIPE; the child must not inherit that.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2})
    sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: a timeout kills what it started too
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    error = "cannot run " + argv[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

// One child being read: its pipes, its deadline, and whether it has been reaped.
struct Child {
  pid_t pid = -1;
  Clock::time_point deadline;
  const std::atomic<bool>* cancel = nullptr;
  size_t max_output = 0;
  bool exited = false;
  int status = 0;
  bool Cancelled() const { return cancel && cancel->load(); }
};

// Reads what is ready on the pipes into r.out/r.err (up to max_output each), closing a pipe at its end.
void ReadReady(Fd& out_r, Fd& err_r, const Child& child, int wait_ms, CommandOutcome& r) {
  pollfd fds[2];
  nfds_t n = 0;
  for (Fd* f : {&out_r, &err_r}) {
    if (f->fd >= 0) fds[n++] = pollfd{f->fd, POLLIN, 0};
  }
  int ready = ::poll(fds, n, wait_ms);
  if (ready < 0 && errno != EINTR) {
    out_r.Close();
    err_r.Close();
    return;
  }
  for (nfds_t i = 0; ready > 0 && i < n; ++i) {
    if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    Fd& f = fds[i].fd == out_r.fd ? out_r : err_r;
    std::string& into = &f == &out_r ? r.out : r.err;
    char buf[16384];
    ssize_t got = ::read(f.fd, buf, sizeof buf);
    if (got > 0) {
      size_t keep = std::min(static_cast<size_t>(got), child.max_output - std::min(child.max_output, into.size()));
      into.append(buf, keep);
      if (keep < static_cast<size_t>(got)) r.truncated = true;
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      f.Close();
    }
  }
}

// Reads both pipes until they close (or a short drain after the child exits or is killed at its deadline).
void ReadUntilDone(Fd& out_r, Fd& err_r, Child& child, CommandOutcome& r) {
  Clock::time_point drain_until = Clock::time_point::max();
  while (out_r.fd >= 0 || err_r.fd >= 0) {
    auto now = Clock::now();
    if (!r.timed_out && (now >= child.deadline || child.Cancelled())) {
      r.timed_out = true;
      ::kill(-child.pid, SIGKILL);
      drain_until = now + kDrainAfterExit;
    }
    if (!child.exited && waitpid(child.pid, &child.status, WNOHANG) == child.pid) {
      child.exited = true;
      drain_until = std::min(drain_until, now + kDrainAfterExit);
    }
    if (now >= drain_until) break;
    int wait_ms = kPollStepMs;
    if (!r.timed_out) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(child.deadline - now).count() + 1;
      wait_ms = static_cast<int>(std::min<long long>(wait_ms, left));
    }
    ReadReady(out_r, err_r, child, wait_ms, r);
  }
}

// Waits for a child that has not been reaped yet, killing it at its deadline.
void Reap(Child& child, CommandOutcome& r) {
  if (child.exited) return;
  if (r.timed_out) {
    waitpid(child.pid, &child.status, 0);
    return;
  }
  // Both pipes closed but the process lives on (it closed them itself): give it the rest of its time.
  while (waitpid(child.pid, &child.status, WNOHANG) == 0) {
    if (Clock::now() >= child.deadline || child.Cancelled()) {
      r.timed_out = true;
      ::kill(-child.pid, SIGKILL);
      waitpid(child.pid, &child.status, 0);
      break;
    }
    ::usleep(10'000);
  }
}

// Fills exit_code/signal and, when the command did not succeed, `error` with what happened and its stderr.
void Describe(const std::string& command, const Child& child, collectors::Millis timeout, CommandOutcome& r) {
  std::string stderr_text = collectors::OneLine(r.err, 2000);
  std::string what;
  if (r.timed_out) {
    what = (child.Cancelled() ? "cancelled" : "timed out after " + collectors::FormatDuration(timeout)) + ", killed";
  } else if (WIFEXITED(child.status)) {
    r.exit_code = WEXITSTATUS(child.status);
    if (r.exit_code != 0) what = "exited with status " + std::to_string(r.exit_code);
  } else if (WIFSIGNALED(child.status)) {
    r.signal = WTERMSIG(child.status);
    what = "killed by signal " + std::to_string(r.signal) + " (" + strsignal(r.signal) + ")";
  }
  if (!what.empty()) r.error = command + " " + what + (stderr_text.empty() ? "" : ": " + stderr_text);
}

}  // namespace

CommandOutcome RunCommand(const std::vector<std::string>& argv, collectors::Millis timeout, size_t max_output,
                          const std::atomic<bool>* cancel) {
  CommandOutcome r;
  const auto start = Clock::now();
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    r.error = "command must be an absolute path";
    return r;
  }
  Fd out_r, out_w, err_r, err_w;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    r.error = std::string("cannot create a pipe: ") + std::strerror(errno);
    return r;
  }
  out_r.fd = p[0];
  out_w.fd = p[1];
  if (pipe2(p, O_CLOEXEC) != 0) {
    r.error = std::string("cannot create a pipe: ") + std::strerror(errno);
    return r;
  }
  err_r.fd = p[0];
  err_w.fd = p[1];
  Child child;
  child.pid = Spawn(argv, out_w, err_w, r.error);
  if (child.pid < 0) return r;
  r.started = true;
  out_w.Close();
  err_w.Close();
  child.deadline = start + timeout;
  child.cancel = cancel;
  child.max_output = max_output;
  ReadUntilDone(out_r, err_r, child, r);
  out_r.Close();
  err_r.Close();
  Reap(child, r);
  r.duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  Describe(argv[0], child, timeout, r);
  return r;
}

}  // namespace pgpulse::agent
