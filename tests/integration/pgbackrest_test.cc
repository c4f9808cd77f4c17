// The pgBackRest collector against a real pgBackRest (Debian's pgbackrest)
// repository on local disk: a throwaway server archiving into it, a real full
// backup, and the agent reporting what `pgbackrest info` says; then a broken
// repository, a failing command and a hanging one, each with its error where
// users look (/metrics, the log, `pgpulse check --connect`), while the
// server's own metrics go on.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <csignal>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/pgbackrest_repo.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

const char* const kPgbackrest = PgbackrestRepo::kCommand;

double Value(const std::string& body, const std::string& series) {
  std::optional<double> v = SampleValue(body, series);
  EXPECT_TRUE(v.has_value()) << "no sample " << series << " in:\n" << body.substr(0, 3000);
  return v.value_or(NAN);
}

class PgbackrestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!PgbackrestRepo::Installed()) GTEST_SKIP() << kPgbackrest << " is not installed (tests/deps.sh installs it)";
    pg_ = PostgresServer::Start(PgbackrestRepo::ServerConf());
    repo_ = PgbackrestRepo::Create(*pg_);
    dir_ = repo_->dir();
    conf_ = repo_->conf();
    backup_started_ = std::time(nullptr);
    repo_->Backup("full");
    backup_finished_ = std::time(nullptr);
    ready_ = true;
  }
  static void TearDownTestSuite() {
    repo_.reset();
    pg_.reset();
  }
  void SetUp() override {
    if (!PgbackrestRepo::Installed()) GTEST_SKIP() << kPgbackrest << " is not installed";
    if (!ready_) GTEST_FAIL() << "the server and repository could not be set up (see above)";
  }

  static std::string Config(const std::string& name, const std::string& pgbackrest_block) {
    return "  - name: " + name + "\n    dsn: \"" + pg_->uri() + "\"\n    pgbackrest:\n" + pgbackrest_block;
  }
  static std::string GoodBlock() { return repo_->PgpulseConfig("      ") + "      ttl: 0s\n      timeout: 20s\n"; }

  static inline std::string dir_, conf_;
  static inline std::unique_ptr<PostgresServer> pg_;
  static inline std::unique_ptr<PgbackrestRepo> repo_;
  static inline std::time_t backup_started_ = 0, backup_finished_ = 0;
  static inline bool ready_ = false;
};

TEST_F(PgbackrestTest, ReportsTheBackupAsPgbackrestInfoSeesIt) {
  std::string cfg = WriteTempFile("pgbackrest-good.yml", "targets:\n" + Config("main", GoodBlock()));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string body = Scrape(*agent);

  // What pgBackRest itself says, read the same moment.
  CommandResult info = repo_->Run({"--output=json", "info"});
  ASSERT_EQ(info.exit_status, 0) << info.output;
  nlohmann::json doc = nlohmann::json::parse(info.output);
  ASSERT_EQ(doc[0]["backup"].size(), 1u) << info.output;
  const nlohmann::json& b = doc[0]["backup"][0];

  const std::string full = "{stanza=\"main\",type=\"full\"}";
  EXPECT_EQ(Value(body, "pg_up"), 1);
  EXPECT_EQ(Value(body, "pgbackrest_up{stanza=\"main\"}"), 1);
  EXPECT_EQ(Value(body, "pgbackrest_stanza_status_code{stanza=\"main\"}"), 0);
  EXPECT_EQ(Value(body, "pgbackrest_backups" + full), 1);
  EXPECT_EQ(Value(body, "pgbackrest_backups{stanza=\"main\",type=\"diff\"}"), 0);
  EXPECT_EQ(Value(body, "pgbackrest_backups_with_errors{stanza=\"main\"}"), 0);
  const double done = Value(body, "pgbackrest_backup_last_completion_timestamp_seconds" + full);
  EXPECT_GE(done, static_cast<double>(backup_started_));
  EXPECT_LE(done, static_cast<double>(backup_finished_));
  EXPECT_EQ(done, b["timestamp"]["stop"].get<double>());
  const double took = Value(body, "pgbackrest_backup_last_duration_seconds" + full);
  EXPECT_EQ(took, b["timestamp"]["stop"].get<double>() - b["timestamp"]["start"].get<double>());
  EXPECT_LE(took, static_cast<double>(backup_finished_ - backup_started_));
  EXPECT_EQ(Value(body, "pgbackrest_backup_last_size_bytes" + full), b["info"]["size"].get<double>());
  EXPECT_EQ(Value(body, "pgbackrest_backup_last_delta_bytes" + full), b["info"]["delta"].get<double>());
  EXPECT_EQ(Value(body, "pgbackrest_backup_last_repository_size_bytes" + full),
            b["info"]["repository"]["size"].get<double>());
  EXPECT_EQ(Value(body, "pgbackrest_repository_backups_size_bytes{stanza=\"main\"}"),
            b["info"]["repository"]["delta"].get<double>());
  EXPECT_EQ(Value(body, "pgbackrest_backup_last_error" + full), 0);
  // A backup of a 15 cluster holds at least its catalog: many MB, and the size PostgreSQL reports for it.
  EXPECT_GT(b["info"]["size"].get<double>(), 10e6);
  EXPECT_EQ(Value(body, "pgpulse_collector_success{collector=\"pgbackrest\",target=\"main\"}"), 1);
  EXPECT_EQ(Value(body, "pgpulse_collector_success{collector=\"connections\",target=\"main\"}"), 1);

  // Names, types and help as Prometheus wants them.
  std::string path = WriteTempFile("pgbackrest-scrape.prom", body);
  PGPULSE_SKIP_WITHOUT_PROMTOOL();
  CommandResult promtool = RunCommand({"sh", "-c", "promtool check metrics < '" + path + "'"});
  EXPECT_EQ(promtool.exit_status, 0) << promtool.output;
  EXPECT_EQ(promtool.output, "") << promtool.output;

  // The landing page lists it like any other collector.
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("<td>pgbackrest</td><td>ok</td>"), std::string::npos) << landing.body;

  // `pgpulse check --connect` too.
  CommandResult check = AgentProcess::Run({"check", "--connect", "--config.file=" + cfg});
  EXPECT_EQ(check.exit_status, 0) << check.output;
  EXPECT_NE(check.output.find("\npgbackrest                   ok"), std::string::npos) << check.output;
}

TEST_F(PgbackrestTest, TtlKeepsTheCommandFromRunningOnEveryScrape) {
  std::string text = "targets:\n" + Config("main", repo_->PgpulseConfig("      ") + "      ttl: 1h\n");
  std::string cfg = WriteTempFile("pgbackrest-ttl.yml", text);
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string first = Scrape(*agent);
  EXPECT_EQ(Value(first, "pgbackrest_up{stanza=\"main\"}"), 1);
  std::string second = Scrape(*agent);
  EXPECT_EQ(Value(second, "pgbackrest_up{stanza=\"main\"}"), 1);
  EXPECT_EQ(Value(second, "pgpulse_collector_cache_hits_total{collector=\"pgbackrest\",target=\"main\"}"), 1);
  EXPECT_EQ(Value(second, "pgbackrest_backups{stanza=\"main\",type=\"full\"}"), 1);
}

TEST_F(PgbackrestTest, ReloadAppliesAChangedStanza) {
  auto block = [](const std::string& stanza) {
    return "      command: " + std::string(kPgbackrest) + "\n      stanza: " + stanza + "\n      config: " + conf_ +
           "\n      ttl: 1h\n";
  };
  std::string cfg = WriteTempFile("pgbackrest-reload.yml", "targets:\n" + Config("main", block("main")));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  EXPECT_EQ(Value(Scrape(*agent), "pgbackrest_up{stanza=\"main\"}"), 1);
  WriteTempFile("pgbackrest-reload.yml", "targets:\n" + Config("main", block("other")));
  agent->Signal(SIGHUP);
  std::string body = ScrapeUntil(
      *agent, [](const std::string& b) { return SampleValue(b, "pgbackrest_up{stanza=\"other\"}").has_value(); }, 5);
  // Despite the 1h ttl: a new stanza is a new collector, not a cached one.
  EXPECT_EQ(Value(body, "pgbackrest_up{stanza=\"other\"}"), 0);
  EXPECT_EQ(Value(body, "pgbackrest_stanza_status_code{stanza=\"other\"}"), 1);
  EXPECT_EQ(CountSamples(body, "pgbackrest_up"), 1) << body;
  EXPECT_NE(agent->Log().find("stanza other: status 1 (missing stanza path)"), std::string::npos) << agent->Log();
}

TEST_F(PgbackrestTest, FailingAndHangingCommandsAreReportedAndTheServerMetricsStay) {
  // A hanging "pgbackrest": killed at its timeout; its child sleep with it.
  const std::string pidfile = WriteTempFile("pgbackrest-hang.pid", "");
  std::string hang = WriteTempFile(
      "pgbackrest-hang.sh", "#!/bin/sh\necho 'waiting for S3' >&2\nsleep 60 &\necho $! > " + pidfile + "\nwait\n");
  chmod(hang.c_str(), 0755);
  std::string cfg = WriteTempFile(
      "pgbackrest-bad.yml",
      "targets:\n" +
          Config("badrepo", "      command: " + std::string(kPgbackrest) + "\n      stanza: main\n      config: " +
                                conf_ + "\n      args: [--repo=3]\n      ttl: 0s\n") +
          Config("hang", "      command: " + hang + "\n      stanza: main\n      timeout: 1s\n      ttl: 0s\n"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  auto started = std::chrono::steady_clock::now();
  std::string body = Scrape(*agent);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(took, 8.0) << "the scrape waited for the hanging command past its timeout";
  for (const char* t : {"badrepo", "hang"}) {
    EXPECT_EQ(Value(body, std::string("pg_up{target=\"") + t + "\"}"), 1) << t;
    EXPECT_EQ(Value(body, std::string("pgbackrest_up{target=\"") + t + "\",stanza=\"main\"}"), 0) << t;
    EXPECT_EQ(Value(body, std::string("pgpulse_collector_success{collector=\"pgbackrest\",target=\"") + t + "\"}"), 0);
    EXPECT_EQ(Value(body, std::string("pgpulse_collector_success{collector=\"connections\",target=\"") + t + "\"}"), 1);
  }
  const std::string badrepo_error = std::string(kPgbackrest) +
                                    " exited with status 32: ERROR: [032]: key '3' is not valid for 'repo' option";
  const std::string hang_error = hang + " timed out after 1s, killed: waiting for S3";
  HttpResponse landing = HttpGet(agent->url("/"));
  std::string badrepo_html = badrepo_error;
  for (size_t at; (at = badrepo_html.find('\'')) != std::string::npos;) badrepo_html.replace(at, 1, "&#39;");
  EXPECT_NE(landing.body.find(badrepo_html), std::string::npos) << landing.body;
  EXPECT_NE(landing.body.find(hang_error), std::string::npos) << landing.body;
  std::string log = agent->Log();
  EXPECT_NE(log.find("target=badrepo collector=pgbackrest stanza=main"), std::string::npos) << log;
  EXPECT_NE(log.find(badrepo_error), std::string::npos) << log;
  EXPECT_NE(log.find(hang_error), std::string::npos) << log;
  // Found before any scrape: a command that cannot be run, a config that cannot be read.
  std::string typo = WriteTempFile("pgbackrest-typo.yml",
                                   "targets:\n" + Config("main",
                                                         "      command: /usr/bin/pgbackrestt\n      stanza: main\n"
                                                         "      config: /nonexistent/pgbackrest.conf\n"));
  CommandResult check = AgentProcess::Run({"check", "--config.file=" + typo});
  EXPECT_EQ(check.exit_status, 1) << check.output;
  EXPECT_NE(check.output.find("target 'main': pgbackrest.command /usr/bin/pgbackrestt cannot be run: No such file"),
            std::string::npos)
      << check.output;
  EXPECT_NE(check.output.find("target 'main': pgbackrest.config /nonexistent/pgbackrest.conf cannot be read"),
            std::string::npos)
      << check.output;

  // The killed script's child went with it: gone, or a zombie waiting to be reaped.
  std::string pid, state;
  std::ifstream(pidfile) >> pid;
  ASSERT_FALSE(pid.empty());
  std::ifstream("/proc/" + pid + "/stat") >> state >> state >> state;  // pid (comm) state
  EXPECT_TRUE(state.empty() || state == "Z") << "sleep " << pid << " survived, state " << state;
}

TEST_F(PgbackrestTest, SlowRepositoryNeverHoldsAScrapePastItsDeadline) {
  std::string slow = WriteTempFile("pgbackrest-slow.sh", "#!/bin/sh\nsleep 60\n");
  chmod(slow.c_str(), 0755);
  std::string cfg = WriteTempFile(
      "pgbackrest-slow.yml",
      "targets:\n" +
          Config("main", "      command: " + slow + "\n      stanza: main\n      timeout: 30s\n      ttl: 0s\n"));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  auto timed_scrape = [&](double& seconds) {
    auto started = std::chrono::steady_clock::now();
    HttpResponse r = HttpGet(agent->url("/metrics"), {"X-Prometheus-Scrape-Timeout-Seconds: 2"});
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_EQ(r.status, 200);
    return r.body;
  };
  double first_took = 0, second_took = 0;
  std::string first = timed_scrape(first_took);
  // The scrape that started the run waits for it until just before its deadline (2s - 0.5s offset), no longer.
  EXPECT_GT(first_took, 1.0);
  EXPECT_LT(first_took, 2.0);
  EXPECT_EQ(Value(first, "pg_up"), 1);
  EXPECT_EQ(Value(first, "pgpulse_collector_success{collector=\"connections\",target=\"main\"}"), 1);
  EXPECT_EQ(Value(first, "pgpulse_collector_success{collector=\"pgbackrest\",target=\"main\"}"), 0);
  // Later scrapes do not wait for the run still in flight.
  std::string second = timed_scrape(second_took);
  EXPECT_LT(second_took, 1.0);
  EXPECT_EQ(Value(second, "pg_up"), 1);
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("pgbackrest info has not finished yet (timeout 30s)"), std::string::npos) << landing.body;
  // Stopping the agent kills the command rather than waiting out its timeout.
  auto stopping = std::chrono::steady_clock::now();
  EXPECT_EQ(agent->Stop(), 0);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - stopping).count(), 5.0);
}

TEST_F(PgbackrestTest, BrokenRepositoryShowsTheErrorWhileTheServerIsFine) {
  // A repository of its own, a copy of the good one, so breaking it leaves the other tests theirs.
  const std::string broken = dir_ + "/broken";
  ASSERT_EQ(RunCommand({"cp", "-a", dir_ + "/repo", broken}).exit_status, 0);
  const std::string conf = dir_ + "/broken.conf";
  {
    std::ifstream in(conf_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    text.replace(text.find(dir_ + "/repo"), dir_.size() + 5, broken);
    std::ofstream(conf) << text;
  }
  std::string block = "      command: " + std::string(kPgbackrest) + "\n      stanza: main\n      config: " + conf +
                      "\n      ttl: 0s\n";
  std::string cfg = WriteTempFile("pgbackrest-broken.yml", "targets:\n" + Config("main", block));
  auto agent = AgentProcess::Start({"--config.file=" + cfg});
  std::string before = Scrape(*agent);
  ASSERT_EQ(Value(before, "pgbackrest_up{stanza=\"main\"}"), 1);

  const std::string info_dir = broken + "/backup/main";
  std::filesystem::rename(info_dir + "/backup.info", info_dir + "/backup.info.moved");
  std::filesystem::rename(info_dir + "/backup.info.copy", info_dir + "/backup.info.copy.moved");
  std::string after = Scrape(*agent);
  EXPECT_EQ(Value(after, "pg_up"), 1);
  EXPECT_EQ(Value(after, "pgbackrest_up{stanza=\"main\"}"), 0);
  EXPECT_EQ(Value(after, "pgbackrest_stanza_status_code{stanza=\"main\"}"), 3);
  EXPECT_EQ(CountSamples(after, "pgbackrest_backup_last_completion_timestamp_seconds"), 0)
      << "stale backup data served";
  EXPECT_EQ(CountSamples(after, "pgbackrest_backups"), 0)
      << "zero backups reported for a repository that cannot be read";
  EXPECT_EQ(Value(after, "pgpulse_collector_success{collector=\"pgbackrest\",target=\"main\"}"), 0);
  EXPECT_EQ(Value(after, "pgpulse_collector_success{collector=\"database_stats\",target=\"main\"}"), 1);
  const std::string error = "stanza main: status 3 (missing stanza data); repo1: missing stanza data";
  EXPECT_NE(agent->Log().find(error), std::string::npos) << agent->Log();
  CommandResult check = AgentProcess::Run({"check", "--connect", "--config.file=" + cfg});
  EXPECT_EQ(check.exit_status, 1) << check.output;
  EXPECT_NE(check.output.find("pgbackrest                   failed"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find(error), std::string::npos) << check.output;

  // Garbage where the info files were: pgBackRest's own message, with its path, comes through.
  std::ofstream(info_dir + "/backup.info") << "garbage\n";
  std::string garbage = Scrape(*agent);
  EXPECT_EQ(Value(garbage, "pgbackrest_stanza_status_code{stanza=\"main\"}"), 99);
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find("stanza main: status 99 (other); repo1: [FormatError] unable to load info file &#39;" +
                              info_dir + "/backup.info&#39;"),
            std::string::npos)
      << landing.body;

  // Repaired: back to up without restarting the agent.
  std::filesystem::remove(info_dir + "/backup.info");
  std::filesystem::rename(info_dir + "/backup.info.moved", info_dir + "/backup.info");
  std::filesystem::rename(info_dir + "/backup.info.copy.moved", info_dir + "/backup.info.copy");
  std::string repaired = Scrape(*agent);
  EXPECT_EQ(Value(repaired, "pgbackrest_up{stanza=\"main\"}"), 1);
  EXPECT_EQ(Value(repaired, "pgbackrest_backups{stanza=\"main\",type=\"full\"}"), 1);
}

}  // namespace
}  // namespace pgpulse::testing
