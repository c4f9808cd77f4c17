// Rotating credentials (issue #16): a password_file read again, a password_command run again, for
// every new connection, against a real PostgreSQL that asks role `rotator` for a SCRAM password.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"

namespace pgpulse::testing {
namespace {

class CredentialsTest : public SharedServerTest {
 protected:
  void SetUp() override {
    // Role rotator must give a password over TCP; everyone else stays trusted.
    std::ofstream(pg_->dir() + "/data/pg_hba.conf") << "local all all trust\n"
                                                       "host all rotator 127.0.0.1/32 scram-sha-256\n"
                                                       "host all all 127.0.0.1/32 trust\n";
    pg_->Exec("DROP ROLE IF EXISTS rotator");
    pg_->Exec("CREATE ROLE rotator LOGIN PASSWORD '" + passwords_[0] + "'; GRANT pg_monitor TO rotator");
    pg_->Exec("SELECT pg_reload_conf()");
  }
  void TearDown() override { pg_->Exec("DROP ROLE IF EXISTS rotator"); }

  std::string Dsn() const {
    return "host=127.0.0.1 port=" + std::to_string(pg_->port()) + " user=rotator dbname=postgres";
  }
  std::string Config(const std::string& password_source) const {
    return "targets:\n  - name: main\n    dsn: \"" + Dsn() + "\"\n" + password_source;
  }
  // Changes the role's password on the server and ends the agent's sessions, so its next
  // connection must log in with the new one.
  void RotateAndKill(const std::string& password) {
    pg_->Exec("ALTER ROLE rotator PASSWORD '" + password + "'");
    pg_->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'rotator'");
    ASSERT_TRUE(PollUntil(
        [&] { return pg_->Query("SELECT count(*) FROM pg_stat_activity WHERE usename = 'rotator'") == "0"; }));
  }
  // No password this test used appears in the agent's log, landing page or metrics.
  void ExpectNoPasswordShown(const AgentProcess& agent) {
    const std::string shown = agent.Log() + HttpGet(agent.url("/")).body + HttpGet(agent.url("/metrics")).body;
    for (const std::string& p : passwords_) EXPECT_EQ(shown.find(p), std::string::npos) << "password " << p << " shown";
  }
  static std::string Executable(const std::string& name, const std::string& script) {
    std::string path = WriteTempFile(name, script);
    chmod(path.c_str(), 0755);
    return path;
  }
  const std::vector<std::string> passwords_{"first-Secret-4711", "second-Secret-0815", "third-Secret-2342"};
};

TEST_F(CredentialsTest, RotatedPasswordFileNeedsNoReload) {
  const std::string file = WriteTempFile("rotating-password", passwords_[0] + "\n");
  const std::string cfg = WriteTempFile("rotating-file.yml", Config("    password_file: " + file + "\n"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--log.level=debug"});
  const std::string reloads = "pgpulse_config_reloads_total{result=\"success\"}";
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << agent->Log();
  const double loads = SampleValue(body, reloads).value_or(-1);

  WriteTempFile("rotating-password", passwords_[1] + "\n");
  RotateAndKill(passwords_[1]);
  // The very next scrape: its lost connection is made again with the file as it is now.
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1.0) << agent->Log();
  EXPECT_EQ(SampleValue(body, reloads).value_or(-1), loads) << "no reload was needed";
  ExpectNoPasswordShown(*agent);
}

TEST_F(CredentialsTest, RotatedPasswordCommandNeedsNoReloadAndARefusedPasswordIsReadAgain) {
  const std::string dir = WriteTempFile("command-state/current", passwords_[0] + "\n");
  const std::string state = dir.substr(0, dir.rfind('/'));
  // Prints the current password; when a newer one waits in `next`, it takes its place after this
  // run (a secret store that rotates just after the agent read it).
  const std::string command = Executable("print-password.sh", "#!/bin/sh\ncat '" + state + "/current'\n[ -f '" + state +
                                                                  "/next' ] && mv '" + state + "/next' '" + state +
                                                                  "/current'\nexit 0\n");
  const std::string cfg = WriteTempFile("rotating-command.yml", Config("    password_command: [" + command + "]\n"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--log.level=debug"});
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_up"), 1.0) << agent->Log();

  WriteTempFile("command-state/current", passwords_[1] + "\n");
  RotateAndKill(passwords_[1]);
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_up"), 1.0) << agent->Log();

  // The server already wants the third password; the command prints the second once more, then
  // the third: the refused login is retried once with a password read again, and the scrape is up.
  WriteTempFile("command-state/next", passwords_[2] + "\n");
  RotateAndKill(passwords_[2]);
  EXPECT_EQ(SampleValue(Scrape(*agent), "pg_up"), 1.0) << agent->Log();
  EXPECT_NE(agent->Log().find("password refused; reading it again and retrying once"), std::string::npos)
      << agent->Log();
  ExpectNoPasswordShown(*agent);
}

TEST_F(CredentialsTest, PasswordCommandThatFailsOrHangsIsAClearErrorAndDown) {
  const std::string failing =
      Executable("failing-password.sh", "#!/bin/sh\necho 'vault: permission denied on secret/db' >&2\nexit 3\n");
  const std::string hanging = Executable("hanging-password.sh", "#!/bin/sh\nexec sleep 60\n");
  const std::string cfg = WriteTempFile(
      "bad-command.yml", "targets:\n  - name: failing\n    dsn: \"" + Dsn() + "\"\n    password_command: [" + failing +
                             "]\n  - name: hanging\n    dsn: \"" + Dsn() + "\"\n    password_command: [" + hanging +
                             "]\n    password_command_timeout: 1s\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  auto start = Clock::now();
  std::string body = Scrape(*agent);
  EXPECT_LT(SecondsSince(start), 5) << "the hanging command is killed at its timeout";
  EXPECT_EQ(SampleValue(body, "pg_up{target=\"failing\"}"), 0.0) << body;
  EXPECT_EQ(SampleValue(body, "pg_up{target=\"hanging\"}"), 0.0) << body;
  const std::string page = HttpGet(agent->url("/")).body;
  EXPECT_NE(page.find("target &#39;failing&#39;: password_command " + failing + ": " + failing +
                      " exited with status 3: vault: permission denied on secret/db"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("password_command " + hanging + ": " + hanging + " timed out after 1s, killed"),
            std::string::npos)
      << page;
  EXPECT_NE(agent->Log().find("msg=\"password command failed\" target=failing"), std::string::npos) << agent->Log();

  // A role check (its own connection) bounds the command too: 503 within 2.5 s, whatever
  // password_command_timeout says.
  const std::string slow = WriteTempFile(
      "slow-command.yml", Config("    password_command: [" + hanging + "]\n    password_command_timeout: 30s\n"));
  auto checked = AgentProcess::Start({"--config.file=" + slow});
  start = Clock::now();
  HttpResponse role = HttpGet(checked->url("/primary"), {}, 10);
  EXPECT_LT(SecondsSince(start), 3.5);
  EXPECT_EQ(role.status, 503);
  EXPECT_NE(role.body.find("password_command " + hanging + ": " + hanging + " timed out after"), std::string::npos)
      << role.body;

  // A command that is not there is refused at load, with where and why.
  const std::string missing =
      WriteTempFile("missing-command.yml", Config("    password_command: [/nonexistent/token]\n"));
  CommandResult r = AgentProcess::Run({"check", "--config.file=" + missing});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.output.find("target 'main': password_command /nonexistent/token cannot be run"), std::string::npos)
      << r.output;
  const std::string relative = WriteTempFile("relative-command.yml", Config("    password_command: [aws, rds]\n"));
  r = AgentProcess::Run({"check", "--config.file=" + relative});
  EXPECT_NE(r.output.find("password_command must be a list whose first item is an absolute program path"),
            std::string::npos)
      << r.output;
  const std::string both = WriteTempFile(
      "both-sources.yml", Config("    password_file: /etc/hostname\n    password_command: [/bin/echo, x]\n"));
  r = AgentProcess::Run({"check", "--config.file=" + both});
  EXPECT_NE(r.output.find("set password_file or password_command, not both"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace pgpulse::testing
