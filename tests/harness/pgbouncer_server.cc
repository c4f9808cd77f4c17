#include "tests/harness/pgbouncer_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/spawn.h"

namespace pgpulse::testing {
namespace {

constexpr const char* kPgBouncer = "/usr/sbin/pgbouncer";

void Write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

// PgBouncer refuses to run as root; as root it runs as OS user postgres, who must own its files.
void GiveToPostgres(const std::string& path) {
  if (geteuid() != 0) return;
  const passwd* pw = getpwnam("postgres");
  if (!pw) throw std::runtime_error("running as root needs an OS user 'postgres' to run pgbouncer");
  if (chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0)
    throw std::runtime_error("chown " + path + ": " + std::strerror(errno));
}

}  // namespace

std::unique_ptr<PgBouncerServer> PgBouncerServer::Start(const PostgresServer& backend, const Options& options) {
  if (access(kPgBouncer, X_OK) != 0)
    throw std::runtime_error(std::string(kPgBouncer) + " not found: apt-get install pgbouncer");
  std::string dir = "/tmp/pgpulse-pgbouncer-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  chmod(dir.c_str(), 0755);
  std::unique_ptr<PgBouncerServer> server(new PgBouncerServer(dir, FreeLoopbackPort()));
  Write(dir + "/users.txt", "\"postgres\" \"\"\n");
  Write(dir + "/pgbouncer.ini",
        "[databases]\n"
        "postgres = host=127.0.0.1 port=" +
            std::to_string(backend.port()) +
            " dbname=postgres\n"
            "\n[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            "listen_port = " +
            std::to_string(server->port_) +
            "\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            "auth_file = " +
            dir +
            "/users.txt\n"
            "admin_users = postgres\n"
            "stats_users = postgres\n"
            "pool_mode = " +
            options.pool_mode +
            "\n"
            "default_pool_size = " +
            std::to_string(options.pool_size) +
            "\n"
            "max_client_conn = " +
            std::to_string(options.max_client_conn) +
            "\n"
            "pidfile = " +
            dir + "/pgbouncer.pid\n");
  for (const char* f : {"", "/users.txt", "/pgbouncer.ini"}) GiveToPostgres(dir + f);
  // Detached, so it outlives this process: once the test process is gone, stop PgBouncer and clean up.
  const std::string watch = "while kill -0 " + std::to_string(getpid()) + " 2>/dev/null && [ -d '" + dir +
                            "' ]; do sleep 1; done; " + "[ -f '" + dir + "/pgbouncer.pid' ] && kill -CONT $(cat '" +
                            dir + "/pgbouncer.pid') 2>/dev/null && " + "kill -KILL $(cat '" + dir +
                            "/pgbouncer.pid') 2>/dev/null; rm -rf '" + dir + "'";
  RunCommand({"bash", "-c", "setsid bash -c \"$0\" </dev/null >/dev/null 2>&1 &", watch}, {}, 10);
  server->Launch();
  return server;
}

void PgBouncerServer::Launch() {
  const std::string log = dir_ + "/pgbouncer.log";
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + log + ": " + std::strerror(errno));
  std::vector<std::string> argv{kPgBouncer, dir_ + "/pgbouncer.ini"};
  // setpriv execs PgBouncer itself (runuser would stay in between as its parent).
  if (geteuid() == 0)
    argv.insert(argv.begin(), {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"});
  pid_ = SpawnChild(argv, {}, fd);
  close(fd);
  const std::string ping = "host=127.0.0.1 port=" + std::to_string(port_) +
                           " user=postgres dbname=pgbouncer connect_timeout=2";
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("pgbouncer exited (status " + std::to_string(DecodeWaitStatus(status)) + "):\n" +
                               LastLines(Log(), 30));
    }
    if (PQping(ping.c_str()) == PQPING_OK) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop();
  throw std::runtime_error("pgbouncer did not accept connections within 10 s:\n" + LastLines(Log(), 30));
}

PgBouncerServer::~PgBouncerServer() {
  if (::testing::Test::HasFailure())
    std::cerr << "---- pgbouncer log (tail) " << dir_ << "/pgbouncer.log ----\n"
              << LastLines(Log(), 40) << "---- end of pgbouncer log ----" << std::endl;
  Stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string PgBouncerServer::admin_dsn() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=pgbouncer";
}

std::string PgBouncerServer::pooled_dsn() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres";
}

void PgBouncerServer::Stop() {
  if (pid_ <= 0) return;
  Thaw();
  StopChild(pid_, SIGINT);
}

void PgBouncerServer::StartAgain() {
  if (pid_ > 0) return;
  Launch();
}

void PgBouncerServer::Freeze() {
  if (pid_ > 0 && !frozen_ && kill(pid_, SIGSTOP) == 0) frozen_ = true;
}

void PgBouncerServer::Thaw() {
  if (pid_ > 0 && frozen_ && kill(pid_, SIGCONT) == 0) frozen_ = false;
}

std::string PgBouncerServer::Log() const { return ReadFile(dir_ + "/pgbouncer.log"); }

}  // namespace pgpulse::testing
