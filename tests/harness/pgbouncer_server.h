// A throwaway PgBouncer (the Debian package's /usr/sbin/pgbouncer) on 127.0.0.1 in front of a
// PostgresServer, for one test.
//
// trust auth with an auth_file naming postgres, who is also admin_users and stats_users; the
// backend server's database postgres is the only pooled database. Its own /tmp dir (readable by
// OS user postgres, who runs it when the test runs as root) and a free port. Runs in the foreground
// as this process's child; a detached watchdog kills it and removes its dir if this process dies.
// Not thread-safe: drive it from the test's thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

namespace pgpulse::testing {

class PostgresServer;

class PgBouncerServer {
 public:
  struct Options {
    int pool_size = 2;                  // default_pool_size
    std::string pool_mode = "session";  // session, transaction or statement
    int max_client_conn = 100;
  };

  // Writes pgbouncer.ini and starts PgBouncer; returns once it answers PQping.
  // Throws std::runtime_error with its log on failure.
  static std::unique_ptr<PgBouncerServer> Start(const PostgresServer& backend, const Options& options);

  // Stops PgBouncer (also when paused) and removes its dir; prints its log's tail if the test failed.
  ~PgBouncerServer();
  PgBouncerServer(const PgBouncerServer&) = delete;
  PgBouncerServer& operator=(const PgBouncerServer&) = delete;

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // The admin console: "host=127.0.0.1 port=N user=postgres dbname=pgbouncer".
  std::string admin_dsn() const;
  // A pooled connection to the backend's database postgres.
  std::string pooled_dsn() const;

  // SIGINT (safe shutdown) and wait; idempotent.
  void Stop();
  // Starts again on the same port after Stop().
  void StartAgain();
  // SIGSTOP / SIGCONT: a console that accepts bytes but never answers.
  void Freeze();
  void Thaw();

  std::string Log() const;

 private:
  PgBouncerServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  void Launch();

  std::string dir_;
  int port_;
  pid_t pid_ = -1;
  bool frozen_ = false;
};

}  // namespace pgpulse::testing
