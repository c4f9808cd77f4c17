#include "tests/harness/postgres_exporter_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "tests/harness/http_client.h"
#include "tests/harness/spawn.h"

namespace pgpulse::testing {

bool PostgresExporterProcess::Installed() { return access(kBinary, X_OK) == 0; }

std::unique_ptr<PostgresExporterProcess> PostgresExporterProcess::Start(const std::string& uri) {
  return StartWith({{"DATA_SOURCE_NAME", uri}});
}

std::unique_ptr<PostgresExporterProcess> PostgresExporterProcess::StartWith(
    const std::map<std::string, std::string>& env, const std::vector<std::string>& args) {
  char tmpl[] = "/tmp/pgpulse-pe-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  const std::string dir = tmpl;
  const std::string log = dir + "/postgres_exporter.log";
  const int port = FreeLoopbackPort();
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + log);
  std::vector<std::string> argv{kBinary, "--web.listen-address=127.0.0.1:" + std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = SpawnChild(argv, env, fd);
  close(fd);
  std::unique_ptr<PostgresExporterProcess> process(new PostgresExporterProcess(dir, port, pid));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      process->pid_ = -1;
      throw std::runtime_error("postgres_exporter exited with status " + std::to_string(DecodeWaitStatus(status)) +
                               "; log:\n" + LastLines(process->Log(), 40));
    }
    try {
      if (HttpGet(process->url("/metrics"), {}, 2).status == 200) return process;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("postgres_exporter did not answer /metrics within 20 s; log:\n" +
                           LastLines(process->Log(), 40));
}

PostgresExporterProcess::~PostgresExporterProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (kill(pid_, 0) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  if (test && test->result()->Failed())
    std::cerr << "---- postgres_exporter log (last 40 lines) ----\n" << LastLines(Log(), 40) << "---- end ----\n";
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string PostgresExporterProcess::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::string PostgresExporterProcess::Log() const { return ReadFile(dir_ + "/postgres_exporter.log"); }

}  // namespace pgpulse::testing
