#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "tests/harness/agent_process.h"
#include "tests/harness/http_client.h"
#include "tests/harness/postgres_server.h"

namespace {

using pgpulse::testing::PostgresServer;

const std::string kScript = std::string(PGPULSE_SOURCE_DIR) + "/tests/harness/pgserver.sh";

// Pids of live (non-zombie) processes whose command line mentions text.
std::vector<int> ProcessesMentioning(const std::string& text) {
  std::vector<int> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(text) != std::string::npos && std::stoi(name) != getpid()) pids.push_back(std::stoi(name));
  }
  return pids;
}

// Polls until nothing mentions text any more; processes take a moment to exit after pg_ctl returns.
bool NoProcessMentionsWithin(const std::string& text, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ProcessesMentioning(text).empty()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

TEST(PostgresServerTest, StartsWithPgStatStatementsLoaded) {
  auto server = PostgresServer::Start();
  EXPECT_EQ(server->Query("SELECT 1"), "1");
  EXPECT_EQ(server->Query("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"), "1");
  EXPECT_EQ(server->Query("SHOW shared_preload_libraries"), "pg_stat_statements");
  EXPECT_EQ(server->Query("SELECT count(*) >= 0 FROM pg_stat_statements"), "t");
  EXPECT_EQ(server->Query("SHOW port"), std::to_string(server->port()));
  EXPECT_EQ(server->Query("SELECT current_user"), "postgres");
  EXPECT_EQ(server->Query("SHOW server_encoding"), "UTF8");
  EXPECT_EQ(server->Query("SELECT NULL"), "");
  EXPECT_EQ(server->Query("SELECT 1 WHERE false"), "");
}

TEST(PostgresServerTest, DsnAndUriPointAtTheServer) {
  auto server = PostgresServer::Start();
  const std::string port = std::to_string(server->port());
  EXPECT_EQ(server->dsn(), "host=127.0.0.1 port=" + port + " user=postgres dbname=postgres");
  EXPECT_EQ(server->uri(), "postgresql://postgres@127.0.0.1:" + port + "/postgres");
  for (const std::string& target : {server->dsn(), server->uri()}) {
    pqxx::connection connection(target);
    pqxx::nontransaction tx(connection);
    EXPECT_EQ(tx.exec("SELECT 41 + 1")[0][0].as<int>(), 42) << target;
  }
}

TEST(PostgresServerTest, ExtraConfLinesWinOverDefaults) {
  auto server = PostgresServer::Start({"max_connections = 20", "work_mem = '8MB'", "work_mem = '9MB'"});
  EXPECT_EQ(server->Query("SHOW max_connections"), "20");
  EXPECT_EQ(server->Query("SHOW work_mem"), "9MB");
  EXPECT_EQ(server->Query("SHOW fsync"), "off");
}

TEST(PostgresServerTest, StopRefusesConnectionsAndStartAgainKeepsData) {
  auto server = PostgresServer::Start();
  const int port = server->port();
  server->Exec("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)");

  server->Stop();
  EXPECT_THROW(server->Query("SELECT 1"), pqxx::broken_connection);
  server->Stop();  // Idempotent.

  server->StartAgain();
  EXPECT_EQ(server->port(), port);
  EXPECT_EQ(server->Query("SHOW port"), std::to_string(port));
  EXPECT_EQ(server->Query("SELECT x FROM kept"), "42");
  EXPECT_EQ(server->Query("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"), "1");
}

TEST(PostgresServerTest, RestartKeepsDataAndStartsANewPostmaster) {
  auto server = PostgresServer::Start();
  server->Exec("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)");
  const std::string before = server->Query("SELECT pg_postmaster_start_time()");
  server->Restart();
  EXPECT_EQ(server->Query("SELECT x FROM kept"), "7");
  EXPECT_NE(server->Query("SELECT pg_postmaster_start_time()"), before);
}

TEST(PostgresServerTest, DestructorRemovesDirectoryAndServerProcesses) {
  auto server = PostgresServer::Start();
  const std::string dir = server->dir();
  ASSERT_TRUE(std::filesystem::exists(dir + "/data/postmaster.pid"));
  ASSERT_FALSE(ProcessesMentioning(dir).empty());

  server.reset();
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(NoProcessMentionsWithin(dir, std::chrono::seconds(5)));
}

TEST(PostgresServerTest, ServersRunSideBySide) {
  auto first = PostgresServer::Start();
  auto second = PostgresServer::Start();
  EXPECT_NE(first->port(), second->port());
  EXPECT_NE(first->dir(), second->dir());
  first->Exec("CREATE TABLE only_here (x int)");
  EXPECT_EQ(second->Query("SELECT to_regclass('only_here') IS NULL"), "t");
}

TEST(PostgresServerTest, ScriptPsqlConnectsAsSuperuser) {
  auto server = PostgresServer::Start();
  const auto result =
      pgpulse::testing::RunCommand({"bash", kScript, "psql", server->dir(), "-At", "-c", "SELECT current_user"});
  EXPECT_EQ(result.exit_status, 0) << result.output;
  EXPECT_EQ(result.output, "postgres\n");

  const auto failing = pgpulse::testing::RunCommand({"bash", kScript, "psql", server->dir(), "-c", "SELECT nope"});
  EXPECT_NE(failing.exit_status, 0);
  EXPECT_NE(failing.output.find("nope"), std::string::npos) << failing.output;
}

TEST(PostgresServerTest, ScriptRefusesNonEmptyDirectory) {
  const std::string dir = pgpulse::testing::WriteTempFile("not-empty/file", "x");
  const std::string parent = std::filesystem::path(dir).parent_path();
  const auto result = pgpulse::testing::RunCommand(
      {"bash", kScript, "start", parent, std::to_string(pgpulse::testing::FreeLoopbackPort())});
  EXPECT_NE(result.exit_status, 0);
  EXPECT_NE(result.output.find("not empty"), std::string::npos) << result.output;
  EXPECT_TRUE(std::filesystem::exists(dir));
}

TEST(PostgresServerTest, ServerOfADeadOwnerIsDestroyed) {
  const pid_t owner = fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    pause();
    _exit(0);
  }
  const std::string dir = "/tmp/pgpulse-orphan-" + std::to_string(getpid());
  const auto started = pgpulse::testing::RunCommand(
      {"bash", kScript, "start", dir, std::to_string(pgpulse::testing::FreeLoopbackPort())},
      {{"PGPULSE_OWNER_PID", std::to_string(owner)}});
  kill(owner, SIGKILL);
  waitpid(owner, nullptr, 0);
  ASSERT_EQ(started.exit_status, 0) << started.output;

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::filesystem::exists(dir) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(NoProcessMentionsWithin(dir, std::chrono::seconds(5)));
  if (std::filesystem::exists(dir)) pgpulse::testing::RunCommand({"bash", kScript, "destroy", dir});
}

TEST(HttpClientTest, RefusedConnectionThrowsWithTheUrl) {
  const std::string url = "http://127.0.0.1:" + std::to_string(pgpulse::testing::FreeLoopbackPort()) + "/metrics";
  try {
    pgpulse::testing::HttpGet(url, {}, 5);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(url), std::string::npos) << e.what();
  }
}

TEST(HttpClientTest, GunzipRoundTripsAndRejectsGarbage) {
  const std::string text(100000, 'x');
  z_stream stream{};
  ASSERT_EQ(deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string compressed(deflateBound(&stream, text.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  stream.avail_in = static_cast<uInt>(text.size());
  stream.next_out = reinterpret_cast<Bytef*>(compressed.data());
  stream.avail_out = static_cast<uInt>(compressed.size());
  ASSERT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  compressed.resize(stream.total_out);
  deflateEnd(&stream);

  EXPECT_EQ(pgpulse::testing::Gunzip(compressed), text);
  EXPECT_THROW(pgpulse::testing::Gunzip(compressed.substr(0, compressed.size() / 2)), std::runtime_error);
  EXPECT_THROW(pgpulse::testing::Gunzip("plain text"), std::runtime_error);
}

}  // namespace
