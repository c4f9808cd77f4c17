#include "tests/harness/postgres_server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"

#ifndef PGPULSE_SOURCE_DIR
#error "PGPULSE_SOURCE_DIR must be defined as the source tree's path"
#endif

namespace pgpulse::testing {
namespace {

constexpr int kStartAttempts = 3;

// Returns the script's output; throws with it if the script fails.
std::string RunScript(std::vector<std::string> args) {
  args.insert(args.begin(), {"bash", std::string(PGPULSE_SOURCE_DIR) + "/tests/harness/pgserver.sh"});
  // The script's watchdog destroys the server once this process is gone, even after a crash or SIGKILL.
  const CommandResult result = RunCommand(args, {{"PGPULSE_OWNER_PID", std::to_string(getpid())}}, 300);
  if (result.exit_status != 0) {
    throw std::runtime_error("pgserver.sh " + args[2] + " failed (exit status " + std::to_string(result.exit_status) +
                             "):\n" + result.output);
  }
  return result.output;
}

std::string MakeServerDir() {
  std::string pattern = "/tmp/pgpulse-pg-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  }
  // When running as root the server runs as user postgres, which must be able to enter.
  chmod(pattern.c_str(), 0755);
  return pattern;
}

void Destroy(const std::string& dir) {
  try {
    RunScript({"destroy", dir});
  } catch (const std::exception& e) {
    std::cerr << e.what() << std::endl;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

// Runs pgserver.sh with `args` followed by the new server's dir, port and `extra_conf`, on a free port;
// tries another port if the chosen one was taken between FreeLoopbackPort() and the server's bind.
// Returns the dir and port.
std::pair<std::string, int> StartOnFreePort(std::vector<std::string> args, const std::vector<std::string>& extra_conf) {
  for (int attempt = 1;; ++attempt) {
    const int port = FreeLoopbackPort();
    const std::string dir = MakeServerDir();
    std::vector<std::string> full = args;
    full.push_back(dir);
    full.push_back(std::to_string(port));
    full.insert(full.end(), extra_conf.begin(), extra_conf.end());
    try {
      RunScript(full);
      return {dir, port};
    } catch (const std::runtime_error& e) {
      Destroy(dir);
      const bool port_taken = std::string(e.what()).find("Address already in use") != std::string::npos;
      if (!port_taken || attempt == kStartAttempts) throw;
    }
  }
}

}  // namespace

std::unique_ptr<PostgresServer> PostgresServer::Start(std::vector<std::string> extra_conf) {
  auto [dir, port] = StartOnFreePort({"start"}, extra_conf);
  return std::unique_ptr<PostgresServer>(new PostgresServer(dir, port));
}

std::unique_ptr<PostgresServer> PostgresServer::StartStandbyOf(const PostgresServer& primary,
                                                               std::vector<std::string> extra_conf) {
  auto [dir, port] = StartOnFreePort({"standby", primary.dir()}, extra_conf);
  return std::unique_ptr<PostgresServer>(new PostgresServer(dir, port));
}

PostgresServer::PostgresServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}

PostgresServer::~PostgresServer() {
  if (::testing::Test::HasFailure()) {
    std::string log = Log();
    size_t pos = log.size();
    for (int lines = 0; lines < 60 && pos != std::string::npos && pos > 0; ++lines) pos = log.rfind('\n', pos - 1);
    std::cerr << "---- postgres log (tail) " << dir_ << "/postgres.log ----\n"
              << (pos == std::string::npos ? log : log.substr(pos + 1)) << "---- end of postgres log ----" << std::endl;
  }
  Destroy(dir_);
}

std::string PostgresServer::dsn() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres";
}

std::string PostgresServer::uri() const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/postgres";
}

void PostgresServer::Stop() { RunScript({"stop", dir_}); }

void PostgresServer::StartAgain() { RunScript({"restart", dir_}); }

void PostgresServer::Restart() { RunScript({"restart", dir_}); }

std::string PostgresServer::Query(const std::string& sql) const {
  pqxx::connection connection(dsn() + " connect_timeout=10");
  pqxx::nontransaction tx(connection);
  const pqxx::result result = tx.exec(sql);
  if (result.empty() || result.columns() == 0 || result[0][0].is_null()) return "";
  return result[0][0].c_str();
}

void PostgresServer::Exec(const std::string& sql) const {
  pqxx::connection connection(dsn() + " connect_timeout=10");
  pqxx::nontransaction tx(connection);
  tx.exec(sql);
}

std::string PostgresServer::Log() const {
  std::ifstream in(dir_ + "/postgres.log", std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace pgpulse::testing
