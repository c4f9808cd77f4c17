// A pgBackRest repository (Debian's /usr/bin/pgbackrest) on local disk for one throwaway PostgresServer: the server
// archives into it (archive-push), and backups of it land in it, made by the real pgbackrest.
//
// It lives in the server's dir (DIR/pgbackrest: pgbackrest.conf, repo/, lock/, log/), so it goes with the server,
// also when the server's watchdog removes a crashed test's leftovers. As root, pgbackrest runs as OS user postgres
// (like the server) and owns repo/, lock/ and log/; the config stays world-readable for an agent run as any user.
// Not thread-safe: drive it from the test's thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tests/harness/agent_process.h"

namespace pgpulse::testing {

class PostgresServer;

class PgbackrestRepo {
 public:
  static constexpr const char* kCommand = "/usr/bin/pgbackrest";

  // False when pgbackrest is not installed (tests/deps.sh installs it): tests then skip.
  static bool Installed();
  // What PostgresServer::Start needs for archiving to a repository (archive_mode needs a restart to change).
  static std::vector<std::string> ServerConf() { return {"archive_mode = on"}; }

  // Writes pgbackrest.conf, points the server's archive_command at archive-push (ALTER SYSTEM and a reload) and
  // creates the stanza. The server must have been started with ServerConf(). Throws std::runtime_error with
  // pgBackRest's output on failure.
  static std::unique_ptr<PgbackrestRepo> Create(const PostgresServer& server, const std::string& stanza = "main");

  // Nothing to stop: the files go with the server's dir.
  ~PgbackrestRepo() = default;
  PgbackrestRepo(const PgbackrestRepo&) = delete;
  PgbackrestRepo& operator=(const PgbackrestRepo&) = delete;

  // pgbackrest --config=CONF --stanza=STANZA ARGS... as the server's OS user.
  CommandResult Run(const std::vector<std::string>& args, double timeout_seconds = 120) const;
  // A backup of type full, diff or incr (start-fast, uncompressed); throws std::runtime_error with its output.
  void Backup(const std::string& type = "full") const;

  // Makes `pgbackrest info` fail for the stanza (status 3, missing stanza data) by moving backup.info and its copy
  // aside; Repair() moves them back. The backups themselves stay.
  void BreakInfo() const;
  void Repair() const;

  const std::string& dir() const { return dir_; }
  const std::string& conf() const { return conf_; }
  std::string repo_path() const { return dir_ + "/repo"; }
  const std::string& stanza() const { return stanza_; }

  // The keys of a target's `pgbackrest:` block in pgpulse's config (command, stanza, config), one a line, each
  // line starting with indent; a test adds ttl, timeout or args after them.
  std::string PgpulseConfig(const std::string& indent) const;

 private:
  PgbackrestRepo(std::string dir, std::string stanza)
      : dir_(std::move(dir)), conf_(dir_ + "/pgbackrest.conf"), stanza_(std::move(stanza)) {}

  std::string dir_;
  std::string conf_;
  std::string stanza_;
};

}  // namespace pgpulse::testing
