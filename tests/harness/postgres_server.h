// A throwaway PostgreSQL server on 127.0.0.1 for one test, run by tests/harness/pgserver.sh.
//
// Superuser postgres, trust auth, pg_stat_statements loaded, its own /tmp dir and free port.
// Not thread-safe except Query/Exec, which open their own connection and may be called from any thread.
// A server outlives neither this object nor this process: the script destroys it if the test process dies.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace pgpulse::testing {

class PostgresServer {
 public:
  // extra_conf lines are appended to postgresql.conf verbatim (later lines win), e.g. "work_mem='8MB'".
  // Throws std::runtime_error carrying the script's output (with the server log's tail) on failure.
  static std::unique_ptr<PostgresServer> Start(std::vector<std::string> extra_conf = {});
  // A streaming standby of a running primary: a base backup of it (pg_basebackup -R -X stream; where the server's
  // bin dir has none, as npm's builds for PGPULSE_PG_MAJOR, a copy of its data dir taken while it is briefly
  // stopped, so its open connections are cut) started in its own dir on its own port. extra_conf as for Start, e.g.
  // "cluster_name='standby1'" (the application_name the primary's pg_stat_replication shows; "walreceiver" without it).
  // Returns once the standby accepts connections; it may not be streaming yet. Destroy it before the primary, or its
  // log fills with reconnect attempts.
  static std::unique_ptr<PostgresServer> StartStandbyOf(const PostgresServer& primary,
                                                        std::vector<std::string> extra_conf = {});

  // Destroys the server and its dir; prints the server log's tail first if the current test failed.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  // Holds data/ (PGDATA), postgres.log and the Unix socket.
  const std::string& dir() const { return dir_; }
  // "host=127.0.0.1 port=N user=postgres dbname=postgres"
  std::string dsn() const;
  // "postgresql://postgres@127.0.0.1:N/postgres"
  std::string uri() const;

  // Fast shutdown (immediate if that hangs); data kept. Idempotent.
  void Stop();
  // Starts again after Stop(), same dir and port. (Not named Start: that would be ambiguous with the factory.)
  void StartAgain();
  // Stop() then StartAgain().
  void Restart();

  // Runs sql on a fresh connection; the first column of the first row as text, "" if none or NULL.
  // Throws what libpqxx throws (e.g. pqxx::broken_connection when the server is down).
  std::string Query(const std::string& sql) const;
  void Exec(const std::string& sql) const;

  std::string Log() const;

 private:
  PostgresServer(std::string dir, int port);

  std::string dir_;
  int port_;
};

}  // namespace pgpulse::testing
