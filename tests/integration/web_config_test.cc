// --web.config.file: TLS and basic auth against a self-signed certificate,
// checked with the curl client.

#include <crypt.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/shared_server.h"
#include "tests/harness/spawn.h"

namespace pgpulse::testing {
namespace {

std::string Bcrypt(const std::string& password, int cost = 5) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  EXPECT_NE(crypt_gensalt_rn("$2b$", cost, nullptr, 0, salt, sizeof salt), nullptr);
  crypt_data data;
  std::memset(&data, 0, sizeof data);
  return crypt_r(password.c_str(), salt, &data);
}

class WebConfigTest : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    SharedServerTest::SetUpTestSuite();
    cert_ = WriteTempFile("tls/cert.pem", "");
    key_ = WriteTempFile("tls/key.pem", "");
    CommandResult made =
        RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key_, "-out", cert_, "-days",
                    "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
    ASSERT_EQ(made.exit_status, 0) << made.output;
  }
  // Status code from curl, "000" when no HTTP response came back.
  static std::string Curl(const std::vector<std::string>& extra, const std::string& url) {
    std::vector<std::string> argv{"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return RunCommand(argv).output;
  }
  static std::string cert_, key_;
};
std::string WebConfigTest::cert_, WebConfigTest::key_;

TEST_F(WebConfigTest, TlsWithBasicAuthAcceptsOnlyTheRightCredentials) {
  std::string web = WriteTempFile("web.yml", "tls_server_config:\n  cert_file: " + cert_ + "\n  key_file: " + key_ +
                                                 "\n  min_version: TLS12\nbasic_auth_users:\n  alice: '" +
                                                 Bcrypt("correct horse") + "'\n");
  auto agent = AgentProcess::Start({"--web.config.file=" + web}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  std::string https = "https://127.0.0.1:" + std::to_string(agent->port());
  EXPECT_EQ(Curl({"--cacert", cert_}, https + "/metrics"), "401");
  EXPECT_EQ(Curl({"--cacert", cert_, "-u", "alice:wrong"}, https + "/metrics"), "401");
  EXPECT_EQ(Curl({"--cacert", cert_, "-u", "mallory:correct horse"}, https + "/metrics"), "401");
  EXPECT_EQ(Curl({"--cacert", cert_, "-u", "alice:correct horse"}, https + "/metrics"), "200");
  EXPECT_EQ(Curl({"--cacert", cert_}, https + "/healthz"), "200");
  // The handshake verifies against the certificate; plain HTTP and old TLS get no HTTP answer.
  EXPECT_EQ(Curl({"--cacert", cert_, "--tls-max", "1.1", "-u", "alice:correct horse"}, https + "/metrics"), "000");
  EXPECT_EQ(Curl({"-u", "alice:correct horse"}, "http://127.0.0.1:" + std::to_string(agent->port()) + "/metrics"),
            "000");
  CommandResult body = RunCommand({"curl", "-s", "--cacert", cert_, "-u", "alice:correct horse", https + "/metrics"});
  EXPECT_NE(body.output.find("\npg_up 1\n"), std::string::npos) << body.output.substr(0, 500);
  EXPECT_TRUE(agent->Running());
}

TEST_F(WebConfigTest, BadWebConfigIsRefusedWithPosition) {
  std::string web =
      WriteTempFile("badweb.yml", "tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: " + key_ +
                                      "\n  min_version: TLS9\nbasic_auth_users:\n  bob: plaintext\n"
                                      "http_server_config: {http2: true}\n");
  CommandResult r = AgentProcess::Run({"--web.config.file=" + web}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  EXPECT_EQ(r.exit_status, 1);
  EXPECT_NE(r.output.find("badweb.yml:2:14: tls_server_config.cert_file: cannot read '/nonexistent.pem'"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("min_version must be TLS10, TLS11, TLS12 or TLS13"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("basic_auth_users.bob: expected a bcrypt hash"), std::string::npos) << r.output;
  EXPECT_NE(
      r.output.find("web config: unknown key 'http_server_config' (allowed: tls_server_config, basic_auth_users)"),
      std::string::npos)
      << r.output;
}

TEST_F(WebConfigTest, BasicAuthWithoutTlsProtectsEveryPathButHealthz) {
  std::string web = WriteTempFile("authonly.yml", "basic_auth_users:\n  ops: '" + Bcrypt("pw") + "'\n");
  auto agent = AgentProcess::Start({"--web.config.file=" + web}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  std::string http = "http://127.0.0.1:" + std::to_string(agent->port());
  EXPECT_EQ(Curl({}, http + "/healthz"), "200") << "liveness probes need no credentials";
  for (const char* path : {"/metrics", "/", "/readyz", "/probe?target=x"})
    EXPECT_EQ(Curl({}, http + path), "401") << path;
  EXPECT_EQ(Curl({"-u", "ops:pw"}, http + "/metrics"), "200");
}

// Issue #18: an unknown user was refused at once and a known user with a wrong password only
// after bcrypt (43 vs 109 ms), which tells an attacker which user names exist.
TEST_F(WebConfigTest, UnknownUserTakesAsLongAsAWrongPassword) {
  std::string web = WriteTempFile("slowhash.yml", "basic_auth_users:\n  ops: '" + Bcrypt("pw", 12) + "'\n");
  auto agent = AgentProcess::Start({"--web.config.file=" + web}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  std::string url = "http://127.0.0.1:" + std::to_string(agent->port()) + "/metrics";
  auto timed = [&](const std::string& credentials) {
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(Curl({"-u", credentials}, url), "401") << credentials;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  double known = 1e9, unknown = 1e9;
  for (int i = 0; i < 3; ++i) {
    known = std::min(known, timed("ops:wrong"));
    unknown = std::min(unknown, timed("nobody:wrong"));
  }
  std::cout << "401 for a known user with a wrong password: " << known << " s, for an unknown user: " << unknown
            << " s\n";
  EXPECT_GT(known, 0.05) << "cost 12 bcrypt should take a while";
  EXPECT_GT(unknown, known * 0.6);
}

// A reload (SIGHUP here, POST /-/reload below) reads the web config again: changed users apply at once.
TEST_F(WebConfigTest, ReloadAppliesChangedUsers) {
  const std::string cfg =
      WriteTempFile("webreload-agent.yml", "targets:\n  - name: main\n    dsn: \"" + pg_->uri() + "\"\n");
  std::string web = WriteTempFile("webreload.yml", "basic_auth_users:\n  ops: '" + Bcrypt("pw") + "'\n");
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--web.config.file=" + web});
  std::string http = "http://127.0.0.1:" + std::to_string(agent->port());
  EXPECT_EQ(Curl({"-u", "ops:pw"}, http + "/metrics"), "200");

  WriteTempFile("webreload.yml", "basic_auth_users:\n  newops: '" + Bcrypt("pw2") + "'\n");
  agent->Signal(SIGHUP);
  EXPECT_TRUE(PollUntil([&] { return Curl({"-u", "newops:pw2"}, http + "/metrics") == "200"; })) << agent->Log();
  EXPECT_EQ(Curl({"-u", "ops:pw"}, http + "/metrics"), "401") << "the removed user is refused";
  EXPECT_EQ(Curl({}, http + "/healthz"), "200");
  EXPECT_NE(agent->Log().find("msg=\"web config applied\""), std::string::npos) << agent->Log();
}

// The listener is set up at start: a reload that finds tls_server_config changed (here
// min_version) refuses the whole reload, says so, and the running setup keeps working.
TEST_F(WebConfigTest, ReloadRefusesAChangedTlsSettingLoudly) {
  const std::string cfg =
      WriteTempFile("tlsreload-agent.yml", "targets:\n  - name: main\n    dsn: \"" + pg_->uri() + "\"\n");
  const std::string original = "tls_server_config:\n  cert_file: " + cert_ + "\n  key_file: " + key_ + "\n";
  std::string web = WriteTempFile("tlsreload.yml", original);
  auto agent = AgentProcess::Start({"--config.file=" + cfg, "--web.config.file=" + web});
  std::string https = "https://127.0.0.1:" + std::to_string(agent->port());
  EXPECT_EQ(Curl({"--cacert", cert_}, https + "/metrics"), "200");

  WriteTempFile("tlsreload.yml", original + "  min_version: TLS13\n");
  WriteTempFile("tlsreload-agent.yml", "targets:\n  - name: renamed\n    dsn: \"" + pg_->uri() + "\"\n");
  agent->Signal(SIGHUP);
  EXPECT_TRUE(PollUntil([&] { return agent->Log().find("configuration rejected") != std::string::npos; }))
      << agent->Log();
  EXPECT_NE(agent->Log().find("tlsreload.yml: tls_server_config changed since pgpulse started"), std::string::npos)
      << agent->Log();
  CommandResult body = RunCommand({"curl", "-s", "--cacert", cert_, https + "/metrics"});
  EXPECT_NE(body.output.find("\npgpulse_config_last_reload_successful 0\n"), std::string::npos) << body.output;
  EXPECT_NE(body.output.find("pg_up 1"), std::string::npos) << "the old config keeps serving";
  EXPECT_EQ(body.output.find("renamed"), std::string::npos) << "nothing of the refused reload applied";

  // Restored: the rest of the config reloads.
  WriteTempFile("tlsreload.yml", original);
  agent->Signal(SIGHUP);
  EXPECT_TRUE(PollUntil([&] {
    return RunCommand({"curl", "-s", "--cacert", cert_, https + "/"}).output.find("Target renamed") !=
           std::string::npos;
  })) << agent->Log();
}

// A renewed certificate written over the same files is served after a reload (here POST
// /-/reload, with the credentials every path but /healthz needs); a key that does not belong to
// the certificate is refused with the files named, and the running certificate stays.
TEST_F(WebConfigTest, ReloadServesARenewedCertificate) {
  const std::string cert = WriteTempFile("renew/cert.pem", ""), key = WriteTempFile("renew/key.pem", "");
  const std::string fresh_cert = WriteTempFile("renew/fresh-cert.pem", ""),
                    fresh_key = WriteTempFile("renew/fresh-key.pem", "");
  for (const auto& [c, k] : {std::pair{cert, key}, std::pair{fresh_cert, fresh_key}}) {
    CommandResult made =
        RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k, "-out", c, "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
    ASSERT_EQ(made.exit_status, 0) << made.output;
  }
  const std::string web = WriteTempFile("renew.yml", "tls_server_config:\n  cert_file: " + cert + "\n  key_file: " +
                                                         key + "\nbasic_auth_users:\n  ops: '" + Bcrypt("pw") + "'\n");
  auto agent =
      AgentProcess::Start({"--web.config.file=" + web, "--web.enable-lifecycle"}, {{"DATA_SOURCE_NAME", pg_->uri()}});
  const std::string https = "https://127.0.0.1:" + std::to_string(agent->port());
  // Trusts the certificate before and after the renewal: the reload's answer comes either way.
  const std::string both = WriteTempFile("renew/both.pem", ReadFile(cert) + ReadFile(fresh_cert));
  auto reload = [&] {
    return RunCommand({"curl", "-s", "-X", "POST", "-u", "ops:pw", "--cacert", both, "-w", " %{http_code}",
                       https + "/-/reload"})
        .output;
  };
  EXPECT_EQ(Curl({"-u", "ops:pw", "--cacert", cert}, https + "/metrics"), "200");
  EXPECT_EQ(Curl({"-u", "ops:pw", "--cacert", fresh_cert}, https + "/metrics"), "000") << "not trusted yet";
  EXPECT_EQ(Curl({"-X", "POST", "--cacert", cert}, https + "/-/reload"), "401");

  // Renewed in place, the old key left: refused, naming both files.
  RunCommand({"cp", fresh_cert, cert});
  std::string answer = reload();
  EXPECT_NE(
      answer.find("renew.yml: tls_server_config: key_file '" + key + "' is not the key of cert_file '" + cert + "'"),
      std::string::npos)
      << answer;
  EXPECT_EQ(answer.substr(answer.size() - 4), " 500") << answer;
  EXPECT_EQ(Curl({"-u", "ops:pw", "--cacert", fresh_cert}, https + "/metrics"), "000") << "the old pair stays";

  RunCommand({"cp", fresh_key, key});
  EXPECT_EQ(reload(), "configuration reloaded\n 200");
  EXPECT_EQ(Curl({"-u", "ops:pw", "--cacert", fresh_cert}, https + "/metrics"), "200");
  EXPECT_NE(agent->Log().find("msg=\"tls certificate loaded\""), std::string::npos) << agent->Log();
}

}  // namespace
}  // namespace pgpulse::testing
