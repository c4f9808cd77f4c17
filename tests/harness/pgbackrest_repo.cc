#include "tests/harness/pgbackrest_repo.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {

bool PgbackrestRepo::Installed() { return access(kCommand, X_OK) == 0; }

std::unique_ptr<PgbackrestRepo> PgbackrestRepo::Create(const PostgresServer& server, const std::string& stanza) {
  if (!Installed()) throw std::runtime_error(std::string(kCommand) + " not found: apt-get install pgbackrest");
  std::unique_ptr<PgbackrestRepo> repo(new PgbackrestRepo(server.dir() + "/pgbackrest", stanza));
  const std::string& dir = repo->dir_;
  std::filesystem::create_directory(dir);
  chmod(dir.c_str(), 0755);
  {
    std::ofstream conf(repo->conf_);
    conf << "[global]\nrepo1-path=" << dir << "/repo\nlock-path=" << dir << "/lock\nlog-path=" << dir
         << "/log\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\ncompress-type=none\n"
         << "repo1-retention-full=10\n\n[" << stanza << "]\npg1-path=" << server.dir()
         << "/data\npg1-port=" << server.port() << "\npg1-socket-path=" << server.dir() << "\n";
    if (!conf) throw std::runtime_error("cannot write " + repo->conf_);
  }
  chmod(repo->conf_.c_str(), 0644);
  const std::vector<std::string> dirs = {dir + "/repo", dir + "/lock", dir + "/log"};
  if (geteuid() == 0) {
    std::vector<std::string> install = {"install", "-d", "-o", "postgres", "-g", "postgres"};
    install.insert(install.end(), dirs.begin(), dirs.end());
    const CommandResult made = RunCommand(install);
    if (made.exit_status != 0) throw std::runtime_error("cannot make the repository's dirs: " + made.output);
  } else {
    for (const auto& d : dirs) std::filesystem::create_directory(d);
  }
  server.Exec("ALTER SYSTEM SET archive_command = '" + std::string(kCommand) + " --config=" + repo->conf_ +
              " --stanza=" + stanza + " archive-push %p'");
  server.Exec("SELECT pg_reload_conf()");
  const CommandResult created = repo->Run({"stanza-create"});
  if (created.exit_status != 0) {
    throw std::runtime_error("pgbackrest stanza-create failed (exit status " + std::to_string(created.exit_status) +
                             "):\n" + created.output);
  }
  return repo;
}

CommandResult PgbackrestRepo::Run(const std::vector<std::string>& args, double timeout_seconds) const {
  std::vector<std::string> argv;
  if (geteuid() == 0) argv = {"runuser", "-u", "postgres", "--"};
  argv.push_back(kCommand);
  argv.push_back("--config=" + conf_);
  argv.push_back("--stanza=" + stanza_);
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, {}, timeout_seconds);
}

void PgbackrestRepo::Backup(const std::string& type) const {
  const CommandResult backup = Run({"backup", "--type=" + type});
  if (backup.exit_status != 0) {
    throw std::runtime_error("pgbackrest backup --type=" + type + " failed (exit status " +
                             std::to_string(backup.exit_status) + "):\n" + backup.output);
  }
}

void PgbackrestRepo::BreakInfo() const {
  const std::string info = repo_path() + "/backup/" + stanza_ + "/backup.info";
  std::filesystem::rename(info, info + ".moved");
  std::filesystem::rename(info + ".copy", info + ".copy.moved");
}

void PgbackrestRepo::Repair() const {
  const std::string info = repo_path() + "/backup/" + stanza_ + "/backup.info";
  std::filesystem::rename(info + ".moved", info);
  std::filesystem::rename(info + ".copy.moved", info + ".copy");
}

std::string PgbackrestRepo::PgpulseConfig(const std::string& indent) const {
  return indent + "command: " + kCommand + "\n" + indent + "stanza: " + stanza_ + "\n" + indent + "config: " + conf_ +
         "\n";
}

}  // namespace pgpulse::testing
