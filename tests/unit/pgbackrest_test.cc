// pgBackRest collector parts that need no server: its config keys, the info
// JSON to metrics (with output recorded from pgBackRest 2.45), and the
// command runner (real child processes: exit codes, stderr, timeouts).

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "agent/sources/command.h"
#include "agent/config.h"
#include "tests/unit/helpers.h"
#include "agent/sources/pgbackrest.h"
#include "collectors/exposition.h"

namespace pgpulse::agent {
namespace {

using pgpulse::testing::Joined;

ConfigResult Load(const std::string& pgbackrest_block) {
  return LoadConfigText("targets:\n  - name: main\n    pgbackrest:\n" + pgbackrest_block, "t.yml", "", "");
}

std::string Fixture() {
  std::ifstream in(std::string(PGPULSE_SOURCE_DIR) + "/tests/unit/data/pgbackrest-info-2.45.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Text(const BackrestReport& r) {
  std::vector<const collectors::Family*> order;
  for (const auto& f : r.families) order.push_back(&f);
  std::string out;
  collectors::WriteExposition(out, order);
  return out;
}

TEST(BackrestConfig, AllKeysLoad) {
  ConfigResult r = Load(
      "      command: /usr/bin/pgbackrest\n      stanza: main\n      config: /etc/pgbackrest/pgbackrest.conf\n"
      "      args: [--repo=1, --log-level-console=off]\n      timeout: 10s\n      ttl: 2m\n");
  ASSERT_TRUE(r.ok()) << Joined(r.errors);
  const BackrestConfig& b = r.config.targets[0].pgbackrest;
  EXPECT_TRUE(b.enabled());
  EXPECT_EQ(b.timeout, Millis(10'000));
  EXPECT_EQ(b.ttl, Millis(120'000));
  EXPECT_EQ(BackrestInfoArgv(b), (std::vector<std::string>{
                                     "/usr/bin/pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf", "--stanza=main",
                                     "--output=json", "--repo=1", "--log-level-console=off", "info"}));
}

TEST(BackrestConfig, DefaultsAndAbsence) {
  ConfigResult r = Load("      command: /usr/bin/pgbackrest\n      stanza: db1\n");
  ASSERT_TRUE(r.ok()) << Joined(r.errors);
  EXPECT_EQ(r.config.targets[0].pgbackrest.timeout, Millis(30'000));
  EXPECT_EQ(r.config.targets[0].pgbackrest.ttl, Millis(300'000));
  ConfigResult none = LoadConfigText("targets:\n  - name: main\n", "t.yml", "", "");
  EXPECT_FALSE(none.config.targets[0].pgbackrest.enabled());
}

TEST(BackrestConfig, BadValuesAreErrorsWithPosition) {
  ConfigResult r = Load(
      "      command: pgbackrest\n      stanza: 'main; rm -rf /'\n      config: relative.conf\n"
      "      args: [--stanza=other, '-x', 'info', --repo=1]\n      timeout: 0s\n      ttl: often\n      color: red\n");
  ASSERT_FALSE(r.ok());
  std::string all = Joined(r.errors);
  EXPECT_NE(all.find("t.yml:4:16: target 'main'.pgbackrest.command must be an absolute path"), std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yml:5:15: target 'main'.pgbackrest.stanza 'main; rm -rf /' may only use"), std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yml:6:15: target 'main'.pgbackrest.config must be an absolute path"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yml:7:14: target 'main'.pgbackrest.args: --stanza is set by the agent"), std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yml:7:30: target 'main'.pgbackrest.args: '-x' is not an option"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yml:7:36: target 'main'.pgbackrest.args: 'info' is not an option"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yml:8:16: target 'main'.pgbackrest.timeout must be more than 0"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yml:9:12: target 'main'.pgbackrest.ttl must be a duration"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yml:10:7: target 'main'.pgbackrest: unknown key 'color'"), std::string::npos) << all;
  EXPECT_EQ(r.errors.size(), 9u) << all;
}

TEST(BackrestConfig, MissingCommandAndStanzaAreNamed) {
  ConfigResult r = LoadConfigText("targets:\n  - name: main\n    pgbackrest: {ttl: 1m}\n", "t.yml", "", "");
  std::string all = Joined(r.errors);
  EXPECT_NE(all.find("t.yml:3:17: target 'main'.pgbackrest: missing required key 'command'"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yml:3:17: target 'main'.pgbackrest: missing required key 'stanza'"), std::string::npos) << all;
  ConfigResult scalar = LoadConfigText("targets:\n  - name: main\n    pgbackrest: yes\n", "t.yml", "", "");
  EXPECT_NE(Joined(scalar.errors).find("t.yml:3:17: target 'main'.pgbackrest must be a map"), std::string::npos)
      << Joined(scalar.errors);
}

TEST(BackrestConfig, ConstantLabelsMayNotCollideWithItsLabels) {
  ConfigResult r = LoadConfigText(
      "targets:\n  - name: main\n    labels: {stanza: x, type: y, env: prod}\n"
      "    pgbackrest: {command: /usr/bin/pgbackrest, stanza: main}\n",
      "t.yml", "", "");
  std::string all = Joined(r.errors);
  EXPECT_NE(all.find("t.yml:3:14: target 'main': label 'stanza' is set by the pgbackrest collector"), std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yml:3:25: target 'main': label 'type' is set by the pgbackrest collector"), std::string::npos)
      << all;
  EXPECT_EQ(r.errors.size(), 2u) << all;
  // Without pgbackrest they are ordinary labels.
  EXPECT_TRUE(LoadConfigText("targets:\n  - name: main\n    labels: {stanza: x}\n", "t.yml", "", "").ok());
}

TEST(BackrestInfo, RealOutputBecomesMetrics) {
  BackrestReport r = ParseBackrestInfo(Fixture(), "main", {{"cluster", "c1"}});
  ASSERT_EQ(r.error, "");
  std::string text = Text(r);
  const std::string s = "{cluster=\"c1\",stanza=\"main\"";
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find("\n" + line + "\n"), std::string::npos) << line << "\n" << text;
  };
  has("pgbackrest_up" + s + "} 1");
  has("pgbackrest_stanza_status_code" + s + "} 0");
  has("pgbackrest_stanza_status_info" + s + ",code=\"0\",message=\"ok\"} 1");
  has("pgbackrest_backup_in_progress" + s + "} 0");
  has("pgbackrest_backups" + s + ",type=\"full\"} 1");
  has("pgbackrest_backups" + s + ",type=\"diff\"} 1");
  has("pgbackrest_backups" + s + ",type=\"incr\"} 1");
  has("pgbackrest_backups_with_errors" + s + "} 0");
  has("pgbackrest_repository_backups_size_bytes" + s + "} 23644142");  // 23037402 + 598282 + 8458
  has("pgbackrest_backup_last_completion_timestamp_seconds" + s + ",type=\"full\"} 1795952387");
  has("pgbackrest_backup_last_duration_seconds" + s + ",type=\"full\"} 2");
  has("pgbackrest_backup_last_size_bytes" + s + ",type=\"full\"} 23037402");
  has("pgbackrest_backup_last_completion_timestamp_seconds" + s + ",type=\"diff\"} 1795952551");
  has("pgbackrest_backup_last_delta_bytes" + s + ",type=\"diff\"} 598282");
  has("pgbackrest_backup_last_repository_size_bytes" + s + ",type=\"incr\"} 23111130");
  has("pgbackrest_backup_last_repository_delta_bytes" + s + ",type=\"incr\"} 8458");
  has("pgbackrest_backup_last_error" + s + ",type=\"incr\"} 0");
  EXPECT_EQ(r.series, 30u);  // 9 per stanza, 7 per backup type
}

TEST(BackrestInfo, LatestBackupOfEachTypeAndErrorsCount) {
  const std::string json = R"([{"name":"db","status":{"code":0,"message":"ok","lock":{"backup":{"held":true}}},
    "backup":[
      {"type":"full","error":true,"timestamp":{"start":100,"stop":160},"info":{"size":10,"delta":10,"repository":{"size":5,"delta":5}}},
      {"type":"full","error":false,"timestamp":{"start":1000,"stop":1100},"info":{"size":20,"delta":20,"repository":{"size":7,"delta":7}}},
      {"type":"incr","error":true,"timestamp":{"start":2000,"stop":2001},"info":{"size":20,"delta":1,"repository":{"size":7,"delta":1}}}]}])";
  BackrestReport r = ParseBackrestInfo(json, "db", {});
  ASSERT_EQ(r.error, "");
  std::string text = Text(r);
  for (const char* line :
       {"pgbackrest_backup_last_completion_timestamp_seconds{stanza=\"db\",type=\"full\"} 1100",
        "pgbackrest_backup_last_error{stanza=\"db\",type=\"full\"} 0",
        "pgbackrest_backup_last_error{stanza=\"db\",type=\"incr\"} 1",
        "pgbackrest_backups_with_errors{stanza=\"db\"} 2", "pgbackrest_backups{stanza=\"db\",type=\"full\"} 2",
        "pgbackrest_backups{stanza=\"db\",type=\"diff\"} 0", "pgbackrest_backup_in_progress{stanza=\"db\"} 1",
        "pgbackrest_repository_backups_size_bytes{stanza=\"db\"} 13"})
    EXPECT_NE(text.find(std::string("\n") + line + "\n"), std::string::npos) << line << "\n" << text;
  EXPECT_EQ(text.find("type=\"diff\"} 0\npgbackrest_backup_last"), std::string::npos);
  EXPECT_EQ(text.find("pgbackrest_backup_last_size_bytes{stanza=\"db\",type=\"diff\"}"), std::string::npos);
}

TEST(BackrestInfo, BrokenStanzaIsAnErrorWithTheRepositoryMessage) {
  const std::string json =
      R"([{"archive":[],"backup":[],"cipher":"none","db":[],"name":"main","repo":[{"cipher":"none","key":1,
    "status":{"code":99,"message":"[FileOpenError] unable to load info file\nHINT: has a stanza-create been performed?"}}],
    "status":{"code":99,"lock":{"backup":{"held":false}},"message":"other"}}])";
  BackrestReport r = ParseBackrestInfo(json, "main", {});
  EXPECT_EQ(r.error,
            "stanza main: status 99 (other); repo1: [FileOpenError] unable to load info file\n"
            "HINT: has a stanza-create been performed?");
  std::string text = Text(r);
  EXPECT_NE(text.find("\npgbackrest_up{stanza=\"main\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\npgbackrest_stanza_status_code{stanza=\"main\"} 99\n"), std::string::npos) << text;
  // An unreadable stanza has no backups to count: no zeros that would read as "no backup at all".
  EXPECT_EQ(text.find("pgbackrest_backups{"), std::string::npos) << text;
  EXPECT_EQ(text.find("pgbackrest_repository_backups_size_bytes{"), std::string::npos) << text;
}

TEST(BackrestInfo, StanzaWithoutBackupsIsNotAnError) {
  const std::string json = R"([{"backup":[],"name":"main","status":{"code":2,"message":"no valid backups"}}])";
  BackrestReport r = ParseBackrestInfo(json, "main", {});
  EXPECT_EQ(r.error, "");
  std::string text = Text(r);
  EXPECT_NE(text.find("\npgbackrest_up{stanza=\"main\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\npgbackrest_backups{stanza=\"main\",type=\"full\"} 0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("pgbackrest_backup_last_completion_timestamp_seconds{"), std::string::npos) << text;
}

TEST(BackrestInfo, MalformedOutputIsAClearErrorNeverACrash) {
  struct Case {
    std::string json, error;
  };
  const Case cases[] = {
      {"", "pgbackrest info output is not valid JSON (it is empty)"},
      {"[{\"name\":", "pgbackrest info output is not valid JSON"},
      {"{}", "unexpected pgbackrest info output: the output is not a list of stanzas"},
      {"[]", "unexpected pgbackrest info output: stanza 'main' is not in the output"},
      {"[{\"name\":\"other\"}]", "unexpected pgbackrest info output: stanza 'main' is not in the output"},
      {"[{\"name\":7}]", "unexpected pgbackrest info output: [0].name is not a string"},
      {"[{\"name\":\"main\"}]", "unexpected pgbackrest info output: stanza main.status is missing"},
      {"[{\"name\":\"main\",\"status\":{\"code\":1e300,\"message\":\"x\"},\"backup\":[]}]",
       "unexpected pgbackrest info output: stanza main.status.code is out of range"},
      {"[{\"name\":\"main\",\"status\":{\"code\":0,\"message\":\"ok\"},\"backup\":{}}]",
       "unexpected pgbackrest info output: stanza main.backup is not a list"},
      {"[{\"name\":\"main\",\"status\":{\"code\":0,\"message\":\"ok\"},\"backup\":[{\"type\":\"full\",\"timestamp\":"
       "{\"start\":1,\"stop\":\"2\"}}]}]",
       "unexpected pgbackrest info output: stanza main.backup[0].info is missing"},
      {"[{\"name\":\"main\",\"status\":{\"code\":0,\"message\":\"ok\"},\"backup\":[{\"type\":\"full\",\"timestamp\":"
       "{\"start\":1,\"stop\":\"2\"},\"info\":{\"size\":1,\"delta\":1,\"repository\":{\"size\":1,\"delta\":1}}}]}]",
       "unexpected pgbackrest info output: stanza main.backup[0].timestamp.stop is not a number"},
      {"[{\"name\":\"main\",\"status\":{\"code\":0,\"message\":\"ok\"},\"backup\":[{\"type\":\"weekly\"}]}]",
       "unexpected pgbackrest info output: stanza main.backup[0].type 'weekly' is unknown"},
  };
  for (const Case& c : cases) {
    BackrestReport r = ParseBackrestInfo(c.json, "main", {});
    EXPECT_EQ(r.error, c.error) << c.json;
    EXPECT_TRUE(r.families.empty()) << c.json;
  }
}

TEST(Command, CapturesOutputAndExitStatus) {
  CommandOutcome ok = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2"}, Millis(5000), 1024);
  EXPECT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(ok.out, "out\n");
  EXPECT_EQ(ok.err, "err\n");
  EXPECT_EQ(ok.exit_code, 0);

  CommandOutcome bad = RunCommand({"/bin/sh", "-c", "echo 'ERROR: [055]: unable to open\nsecond line' >&2; exit 55"},
                                  Millis(5000), 1024);
  EXPECT_EQ(bad.exit_code, 55);
  EXPECT_EQ(bad.error, "/bin/sh exited with status 55: ERROR: [055]: unable to open second line");
}

TEST(Command, StdinIsEmptyAndArgumentsAreNotAShell) {
  CommandOutcome r = RunCommand({"/bin/echo", "$(id)", "; ls", "*"}, Millis(5000), 1024);
  EXPECT_EQ(r.out, "$(id) ; ls *\n");
  CommandOutcome in = RunCommand({"/bin/cat"}, Millis(5000), 1024);
  EXPECT_TRUE(in.ok()) << in.error;
  EXPECT_EQ(in.out, "");
}

TEST(Command, HangingCommandAndItsChildrenAreKilledAtTheTimeout) {
  char pidfile[] = "/tmp/pgpulse-command-XXXXXX";
  ::close(mkstemp(pidfile));
  auto start = std::chrono::steady_clock::now();
  CommandOutcome r = RunCommand(
      {"/bin/sh", "-c", std::string("echo started >&2; sleep 30 & echo $! > ") + pidfile + "; sleep 30; wait"},
      Millis(300), 1024);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(r.error, "/bin/sh timed out after 300ms, killed: started");
  // The background child went with its group: gone, or a zombie waiting for init.
  std::string pid;
  std::ifstream(pidfile) >> pid;
  std::remove(pidfile);
  ASSERT_FALSE(pid.empty());
  // SIGKILL is delivered at once but the kernel may still be tearing the process down: allow it 2 s.
  std::string stat;
  for (int i = 0; i < 200; ++i) {
    stat.clear();
    std::ifstream("/proc/" + pid + "/stat") >> stat >> stat >> stat;  // pid (comm) state
    if (stat.empty() || stat == "Z") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(stat.empty() || stat == "Z") << "sleep " << pid << " is in state " << stat;
}

TEST(Command, SignalOutputLimitAndMissingProgram) {
  CommandOutcome sig = RunCommand({"/bin/sh", "-c", "kill -TERM $$"}, Millis(5000), 1024);
  EXPECT_EQ(sig.signal, 15);
  EXPECT_NE(sig.error.find("/bin/sh killed by signal 15"), std::string::npos) << sig.error;

  CommandOutcome big = RunCommand({"/bin/sh", "-c", "head -c 100000 /dev/zero"}, Millis(5000), 1000);
  EXPECT_TRUE(big.truncated);
  EXPECT_EQ(big.out.size(), 1000u);

  CommandOutcome missing = RunCommand({"/nonexistent/pgbackrest", "info"}, Millis(5000), 1024);
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.error.find("/nonexistent/pgbackrest"), std::string::npos) << missing.error;

  CommandOutcome relative = RunCommand({"pgbackrest"}, Millis(5000), 1024);
  EXPECT_EQ(relative.error, "command must be an absolute path");
}

TEST(Command, CancelStopsARunningCommand) {
  std::atomic<bool> cancel{true};
  CommandOutcome r = RunCommand({"/bin/sleep", "30"}, Millis(30'000), 1024, &cancel);
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(r.duration_seconds, 5.0);
  EXPECT_EQ(r.error, "/bin/sleep cancelled, killed");
}

}  // namespace
}  // namespace pgpulse::agent
