// The DSN's TLS settings reach libpq: sslmode, sslrootcert, and client
// certificates (sslcert/sslkey) against a server that requires them.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

class DatabaseTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A CA, a server certificate for 127.0.0.1 and a client certificate for user certuser, all signed by it.
    dir_ = WriteTempFile("pgtls/.keep", "");
    dir_ = dir_.substr(0, dir_.rfind('/'));
    auto run = [](const std::string& script) {
      CommandResult r = RunCommand({"bash", "-c", "set -e; cd '" + dir_ + "'; " + script});
      ASSERT_EQ(r.exit_status, 0) << r.output;
    };
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=pgpulse-test-ca");
    run("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 && "
        "printf 'subjectAltName=IP:127.0.0.1' > san.ext && "
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 "
        "-extfile san.ext");
    run("openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=certuser && "
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2");
    // PostgreSQL wants its key private to the user it runs as (postgres when the tests run as root);
    // libpq wants the client key private to the agent's user.
    std::string owner = geteuid() == 0 ? "postgres" : "$(id -un)";
    run("chmod 0755 . && chmod 0644 *.crt && chmod 0600 server.key client.key && chown " + owner +
        " server.key server.crt ca.crt");
    std::ofstream(dir_ + "/pg_hba.conf") << "local all all trust\n"
                                            "hostssl all certuser 127.0.0.1/32 cert\n"
                                            "host all certuser 127.0.0.1/32 reject\n"
                                            "host all all 127.0.0.1/32 trust\n";
    run("chmod 0644 pg_hba.conf");
    pg_ = PostgresServer::Start({"ssl = on", "ssl_cert_file = '" + dir_ + "/server.crt'",
                                 "ssl_key_file = '" + dir_ + "/server.key'", "ssl_ca_file = '" + dir_ + "/ca.crt'",
                                 "hba_file = '" + dir_ + "/pg_hba.conf'"})
              .release();
    pg_->Exec("CREATE ROLE certuser LOGIN; GRANT pg_monitor TO certuser");
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  std::string Base(const std::string& user) const {
    return "host=127.0.0.1 port=" + std::to_string(pg_->port()) + " dbname=postgres user=" + user;
  }
  double Up(const std::string& dsn, std::string* log = nullptr) {
    auto agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", dsn}});
    std::string body = HttpGet(agent->url("/metrics")).body;
    if (log) *log = agent->Log() + HttpGet(agent->url("/")).body;
    return SampleValue(body, "pg_up").value_or(-1);
  }
  static PostgresServer* pg_;
  static std::string dir_;
};
PostgresServer* DatabaseTls::pg_ = nullptr;
std::string DatabaseTls::dir_;

TEST_F(DatabaseTls, VerifyFullAgainstTheRightCaConnectsOverTls) {
  EXPECT_EQ(Up(Base("postgres") + " sslmode=verify-full sslrootcert=" + dir_ + "/ca.crt"), 1.0);
  // And the server sees the agent's session as TLS.
  auto agent = AgentProcess::Start(
      {}, {{"DATA_SOURCE_NAME", Base("postgres") + " sslmode=verify-full sslrootcert=" + dir_ + "/ca.crt"}});
  HttpGet(agent->url("/metrics"));
  EXPECT_EQ(pg_->Query("SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                       " WHERE a.application_name = 'pgpulse'"),
            "t");
}

TEST_F(DatabaseTls, VerifyFullWithAnotherCaIsRefusedWithTheReason) {
  std::string log;
  EXPECT_EQ(Up(Base("postgres") + " sslmode=verify-full sslrootcert=" + dir_ + "/client.crt", &log), 0.0);
  EXPECT_NE(log.find("certificate verify failed"), std::string::npos) << log;
}

TEST_F(DatabaseTls, ClientCertificateAuthenticatesAndItsAbsenceIsRefused) {
  EXPECT_EQ(Up(Base("certuser") + " sslmode=verify-ca sslrootcert=" + dir_ + "/ca.crt sslcert=" + dir_ +
               "/client.crt sslkey=" + dir_ + "/client.key"),
            1.0);
  std::string log;
  EXPECT_EQ(Up(Base("certuser") + " sslmode=disable", &log), 0.0);
  EXPECT_NE(log.find("pg_hba.conf rejects connection"), std::string::npos) << log;
}

}  // namespace
}  // namespace pgpulse::testing
