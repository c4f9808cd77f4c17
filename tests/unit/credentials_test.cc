// agent/credentials.h and the password_command config keys: a password read again for every new
// connection, from a file or a command, and what the config says when it is set up wrong.

#include "agent/credentials.h"
#include "tests/unit/helpers.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "agent/config.h"
#include "agent/log.h"

namespace pgpulse::agent {
namespace {

std::string Write(const std::string& text, mode_t mode = 0600) { return pgpulse::testing::WriteTempFile(text, mode); }

// What libpq makes of a conninfo string: keyword -> value.
std::map<std::string, std::string> Parsed(const std::string& conninfo) {
  std::map<std::string, std::string> out;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  EXPECT_NE(opts, nullptr) << (err ? err : "");
  for (PQconninfoOption* o = opts; o && o->keyword; ++o) {
    if (o->val) out[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

const std::string kBase = "host='db' user='mon' password='from-load'";

TEST(Credentials, PasswordFileIsReadForEveryNewConnection) {
  TargetConfig t;
  t.name = "main";
  t.password_file = Write("first-ab12\n");
  EXPECT_EQ(Parsed(ConninfoForNewConnection(t, kBase))["password"], "first-ab12");
  std::ofstream(t.password_file) << "second 'quoted\\ \n";
  const std::string next = ConninfoForNewConnection(t, kBase);
  EXPECT_EQ(Parsed(next)["password"], "second 'quoted\\ ");
  EXPECT_EQ(Parsed(next)["host"], "db");
  EXPECT_EQ(Redact("x second 'quoted\\  y"), "x [REDACTED] y");
  std::remove(t.password_file.c_str());
  try {
    ConninfoForNewConnection(t, kBase);
    ADD_FAILURE() << "a missing file must throw";
  } catch (const CredentialError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("target 'main': " + t.password_file + ": cannot read password file", 0), 0u)
        << e.what();
  }
}

TEST(Credentials, WithoutASourceTheConninfoIsUnchanged) {
  TargetConfig t;
  EXPECT_EQ(ConninfoForNewConnection(t, kBase), kBase);
  EXPECT_FALSE(HasRotatingPassword(t));
}

TEST(Credentials, PasswordCommandFirstLineFailuresAndTimeout) {
  TargetConfig t;
  t.name = "rds";
  t.password_command = {"/bin/sh", "-c", "printf 'tok-en-9911\\nsecond line\\n'"};
  EXPECT_EQ(Parsed(ConninfoForNewConnection(t, kBase))["password"], "tok-en-9911");
  EXPECT_EQ(Redact("tok-en-9911"), "[REDACTED]");

  auto error_of = [&](std::vector<std::string> argv) {
    t.password_command = std::move(argv);
    try {
      ConninfoForNewConnection(t, kBase);
    } catch (const CredentialError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of({"/bin/sh", "-c", "echo denied >&2; exit 4"}),
            "target 'rds': password_command /bin/sh: /bin/sh exited with status 4: denied");
  EXPECT_EQ(error_of({"/bin/sh", "-c", "echo"}),
            "target 'rds': password_command /bin/sh printed no password (its first line of output is empty)");
  t.password_command_timeout = std::chrono::milliseconds(300);
  EXPECT_EQ(error_of({"/bin/sh", "-c", "echo never-shown-77; exec sleep 30"}),
            "target 'rds': password_command /bin/sh: /bin/sh timed out after 300ms, killed");
}

TEST(Credentials, OldRotatedPasswordsLeaveTheRedaction) {
  TargetConfig t;
  t.name = "vault";
  t.password_file = Write("rot-1-zz\n");
  for (const char* p : {"rot-1-zz", "rot-2-zz", "rot-3-zz", "rot-4-zz"}) {
    std::ofstream(t.password_file) << p << "\n";
    ConninfoForNewConnection(t, kBase);
  }
  // The two newest are still redacted (connections may use them); older ones are forgotten.
  EXPECT_EQ(Redact("rot-4-zz rot-3-zz"), "[REDACTED] [REDACTED]");
  EXPECT_EQ(Redact("rot-1-zz"), "rot-1-zz");
  std::remove(t.password_file.c_str());
}

TEST(Credentials, AuthenticationFailuresAreRecognised) {
  EXPECT_TRUE(IsAuthenticationFailure(
      "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user "
      "\"mon\""));
  EXPECT_TRUE(IsAuthenticationFailure("FATAL:  PAM authentication failed for user \"iam\""));
  EXPECT_FALSE(IsAuthenticationFailure("FATAL:  database \"x\" does not exist"));
  TargetConfig t;
  EXPECT_FALSE(RetryAfterAuthenticationFailure(t, "FATAL:  password authentication failed for user \"mon\""))
      << "a fixed password read again would be the same";
}

TEST(Config, PasswordCommandKeys) {
  ConfigResult ok = LoadConfigText(
      "targets:\n  - name: rds\n    password_command: [/usr/bin/aws, rds, generate-db-auth-token]\n"
      "    password_command_timeout: 20s\n"
      "auth_modules:\n  m:\n    user: u\n    password_command: [/usr/bin/vault, read]\n"
      "    allowed_targets: [db1]\n    allow_unverified_server: true\n",
      "c.yml", "", "");
  ASSERT_TRUE(ok.ok()) << ok.errors[0];
  EXPECT_EQ(ok.config.targets[0].password_command,
            (std::vector<std::string>{"/usr/bin/aws", "rds", "generate-db-auth-token"}));
  EXPECT_EQ(ok.config.targets[0].password_command_timeout, std::chrono::milliseconds(20'000));
  EXPECT_EQ(ok.config.auth_modules["m"].password_command, (std::vector<std::string>{"/usr/bin/vault", "read"}));

  ConfigResult bad = LoadConfigText(
      "targets:\n  - name: a\n    password_command: [aws, rds]\n"
      "  - name: b\n    password_file: /pw\n    password_command: [/bin/echo]\n"
      "  - name: c\n    password_command_timeout: 1s\n"
      "  - name: d\n    password_command: /usr/bin/aws rds\n",
      "c.yml", "", "");
  std::string all;
  for (const auto& e : bad.errors) all += e + "\n";
  EXPECT_NE(all.find("c.yml:3:23: target 'a'.password_command must be a list whose first item is an absolute program "
                     "path (it is run without a shell)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("c.yml:6:23: target 'b': set password_file or password_command, not both"), std::string::npos)
      << all;
  EXPECT_NE(all.find("c.yml:8:31: target 'c'.password_command_timeout needs password_command"), std::string::npos)
      << all;
  EXPECT_NE(all.find("c.yml:10:23: target 'd'.password_command"), std::string::npos) << all;
}

}  // namespace
}  // namespace pgpulse::agent
