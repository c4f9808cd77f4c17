// The shipped disk alerts end to end: a throwaway PostgreSQL with a tablespace on a 16 MiB tmpfs mounted for the
// test, an agent that statvfs()es it, a real Prometheus with the shipped rules (only `for` durations and trend
// windows shortened, via alerts/generate.sh --thresholds) and a real Alertmanager posting to the test's webhook.
// Healthy first: no disk or archiving alert, while the metrics they read are there. Then archiving starts to fail
// and a table fills the tablespace past 80% (SpaceLow, not yet SpaceCritical) and past 95% (SpaceCritical), each
// reaching the webhook with the tablespace's labels; pg_wal grows while archiving fails
// (PostgreSQLWALGrowingWhileArchivingFails) and segments wait with none archived since (PostgreSQLArchivingStale).
// Needs root (mount); CI runs as root. The mount is undone however the test ends, even if the process dies.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/harness/alert_rules.h"
#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/alertmanager_server.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/prometheus_server.h"
#include "tests/harness/webhook_receiver.h"

namespace pgpulse::testing {
namespace {

constexpr unsigned long long kTmpfsBytes = 16ull << 20;
const char kTablespace[] = "e2e_disk";

// The shipped ratios (20% and 5% left, 40% for the trend) stay; durations shrink to seconds. The trend looks 20 s
// back and 60 s ahead, so filling 14 MiB in a second is a trend, and the host's own disk never is.
const char kThresholds[] = R"(exporter_down_for: 3s
collector_failing_for: 3s
filesystem_space_for: 2s
filesystem_fill_window: 20s
filesystem_fill_horizon_seconds: 60
filesystem_fill_for: 2s
wal_growth_window: 10s
wal_growth_for: 2s
archive_stale_seconds: 2
archive_stale_for: 2s
)";

const std::set<std::string> kDiskAlerts = {
    "PostgreSQLFilesystemSpaceLow",  "PostgreSQLFilesystemSpaceCritical",
    "PostgreSQLFilesystemFillingUp", "PostgreSQLWALGrowingWhileArchivingFails",
    "PostgreSQLArchivingStale",
};

void Note(const std::string& what) { std::cout << "[ disk     ] " << what << std::endl; }

// A tmpfs of `bytes` on a fresh /tmp/pgpulse-disk-XXXXXX whose root belongs to the OS user postgres (0700, as
// PostgreSQL wants a tablespace directory). The destructor unmounts it (detaching it lazily if a process still
// holds files in it) and removes the mount point. A detached watchdog does the same if this process dies first
// (crash, SIGKILL), so no mount outlives the test. Destroy the server using it first.
class TmpfsMount {
 public:
  explicit TmpfsMount(unsigned long long bytes) {
    const struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      error_ = "no OS user 'postgres' to own the tablespace";
      return;
    }
    std::string pattern = "/tmp/pgpulse-disk-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      errno_ = errno;
      error_ = "mkdtemp " + pattern + ": " + std::strerror(errno_);
      return;
    }
    path_ = pattern;
    chmod(path_.c_str(), 0755);
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700,uid=" + std::to_string(pw->pw_uid) +
                                ",gid=" + std::to_string(pw->pw_gid);
    // The source name shows in df and /proc/mounts, should one ever be left behind.
    if (mount("pgpulse-e2e-disk", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options.c_str()) != 0) {
      errno_ = errno;
      error_ = "mount -t tmpfs -o " + options + " on " + path_ + ": " + std::strerror(errno_);
      return;
    }
    mounted_ = true;
    StartWatchdog();
  }

  ~TmpfsMount() {
    if (mounted_ && umount2(path_.c_str(), 0) != 0) {
      const int busy = errno;
      if (umount2(path_.c_str(), MNT_DETACH) != 0) {
        ADD_FAILURE() << "cannot unmount " << path_ << ": " << std::strerror(errno);
      } else {
        std::cerr << "unmount " << path_ << ": " << std::strerror(busy) << "; detached it instead" << std::endl;
      }
    }
    if (!path_.empty() && rmdir(path_.c_str()) != 0) {
      ADD_FAILURE() << "cannot remove the mount point " << path_ << ": " << std::strerror(errno);
    }
    if (watchdog_ > 0) {
      kill(watchdog_, SIGTERM);
      waitpid(watchdog_, nullptr, 0);
    }
  }

  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool ok() const { return mounted_; }
  // errno of the failed step, 0 if none; error() says which step.
  int error_number() const { return errno_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  // Not through SpawnChild: its children die with the thread that started them, and this one must outlive the
  // whole process. Its own session, stdio on /dev/null, cwd / (so it never holds the mount busy).
  void StartWatchdog() {
    const std::string script =
        "cd / || exit 1\n"
        "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done\n"
        "if mountpoint -q \"$2\"; then umount \"$2\" 2>/dev/null || umount -l \"$2\"; fi\n"
        "rmdir \"$2\" 2>/dev/null\n";
    const std::string owner = std::to_string(getpid());
    std::vector<const char*> argv = {"bash",        "-c",          script.c_str(), "pgpulse-disk-watchdog",
                                     owner.c_str(), path_.c_str(), nullptr};
    const pid_t pid = fork();
    if (pid == 0) {
      setsid();
      const int null = open("/dev/null", O_RDWR);
      if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
      }
      execvp(argv[0], const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    if (pid < 0) {
      ADD_FAILURE() << "cannot fork the mount watchdog: " << std::strerror(errno);
      return;
    }
    watchdog_ = pid;
  }

  std::string path_;
  bool mounted_ = false;
  int errno_ = 0;
  std::string error_;
  pid_t watchdog_ = -1;
};

struct Space {
  double size = 0;
  double avail = 0;
};

Space Statvfs(const std::string& path) {
  struct statvfs vfs {};
  if (statvfs(path.c_str(), &vfs) != 0) throw std::runtime_error("statvfs " + path + ": " + std::strerror(errno));
  const double frsize = static_cast<double>(vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize);
  return {static_cast<double>(vfs.f_blocks) * frsize, static_cast<double>(vfs.f_bavail) * frsize};
}

// df -B1 --output=size,avail PATH.
Space Df(const std::string& path) {
  const CommandResult r = RunCommand({"df", "-B1", "--output=size,avail", path});
  if (r.exit_status != 0) throw std::runtime_error("df " + path + ": " + r.output);
  std::istringstream in(r.output);
  std::string header_size, header_avail;
  Space s;
  in >> header_size >> header_avail >> s.size >> s.avail;
  return s;
}

std::string DeviceOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "?";
  return std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
}

// Inserts ~1 KiB rows (md5 text does not compress; 8 fit a page) into table until the filesystem at path has
// less than `ratio` of its size available, approaching it in shrinking steps. Heap and free space map pages are
// allocated when the relation is extended, so statvfs() sees each step at once. Returns the ratio reached.
double FillBelow(const PostgresServer& pg, const std::string& table, const std::string& path, double ratio) {
  for (int step = 0; step < 100; ++step) {
    const Space s = Statvfs(path);
    if (s.avail < ratio * s.size) return s.avail / s.size;
    const long rows = std::max(8L, static_cast<long>((s.avail - ratio * s.size) * 0.9 / 1024));
    pg.Exec("INSERT INTO " + table + " SELECT repeat(md5(g::text || random()::text), 28) FROM generate_series(1, " +
            std::to_string(rows) + ") g");
  }
  throw std::runtime_error("the filesystem at " + path + " did not fill below " + std::to_string(ratio));
}

// The agent's sample for the tablespace's filesystem row, labels in the order the exposition writes them.
std::string Row(const std::string& path, const std::string& device) {
  return std::string("{kind=\"tablespace\",tablespace=\"") + kTablespace + "\",path=\"" + path +
         "\",reason=\"\",device=\"" + device + "\"}";
}

// Scrapes the agent (and runs df) between two statvfs() calls. The server may write meanwhile (a checkpoint,
// hint bits), so what cannot move (the size) is compared exactly and the available bytes must lie between the
// two readings: exactly statvfs's when the filesystem held still, which a few attempts make the usual case.
void ExpectAgentSeesWhatDfSees(const AgentProcess& agent, const std::string& path, const std::string& device) {
  for (int attempt = 1; attempt <= 5; ++attempt) {
    const Space before = Statvfs(path);
    const HttpResponse r = HttpGet(agent.url("/metrics"));
    const Space df = Df(path);
    const Space after = Statvfs(path);
    ASSERT_EQ(r.status, 200) << r.body;
    if (before.avail != after.avail && attempt < 5) continue;
    const double low = std::min(before.avail, after.avail);
    const double high = std::max(before.avail, after.avail);
    EXPECT_EQ(df.size, after.size) << "df and statvfs disagree on " << path;
    EXPECT_GE(df.avail, low) << "df and statvfs disagree on " << path;
    EXPECT_LE(df.avail, high) << "df and statvfs disagree on " << path;
    EXPECT_EQ(after.size, static_cast<double>(kTmpfsBytes));
    // The whole scrape once, when the row is not there at all (not visible, or other labels).
    ASSERT_EQ(SampleValue(r.body, "pg_filesystem_visible" + Row(path, device)), 1) << r.body;
    EXPECT_EQ(SampleValue(r.body, "pg_filesystem_size_bytes" + Row(path, device)), after.size);
    const std::optional<double> avail = SampleValue(r.body, "pg_filesystem_avail_bytes" + Row(path, device));
    const std::optional<double> free = SampleValue(r.body, "pg_filesystem_free_bytes" + Row(path, device));
    ASSERT_TRUE(avail && free) << r.body;
    EXPECT_GE(*avail, low);
    EXPECT_LE(*avail, high);
    EXPECT_EQ(*free, *avail) << "tmpfs reserves nothing for root: free is avail";
    return;
  }
}

// The disk alerts among `alerts`, described.
std::string DescribeDiskAlerts(std::vector<PrometheusServer::Alert> alerts) {
  alerts.erase(
      std::remove_if(alerts.begin(), alerts.end(), [](const auto& a) { return !kDiskAlerts.count(a.alertname); }),
      alerts.end());
  return DescribeAlerts(alerts);
}

bool Fired(const WebhookReceiver& webhook, const std::string& alertname, const Labels& want) {
  for (const auto& a : webhook.Received()) {
    if (a.alertname == alertname && a.status == "firing" && LabelsInclude(a.labels, want)) return true;
  }
  return false;
}

// Waits until alertname reached the webhook firing with (at least) the labels want, calling nudge (if any) about
// every second meanwhile. On timeout, fails with what the webhook got, Prometheus's disk alerts and evidence.
::testing::AssertionResult WaitForFiring(const WebhookReceiver& webhook, const PrometheusServer& prometheus,
                                         const std::string& alertname, const Labels& want,
                                         const std::string& evidence_promql, double timeout_seconds,
                                         const std::function<void()>& nudge = nullptr) {
  const auto start = Clock::now();
  auto nudged = start;
  while (!Fired(webhook, alertname, want)) {
    if (SecondsSince(start) > timeout_seconds) {
      std::string in_prometheus;
      try {
        in_prometheus = DescribeDiskAlerts(prometheus.Alerts());
      } catch (const std::exception& e) {
        in_prometheus = e.what();
      }
      return ::testing::AssertionFailure()
             << alertname << " " << FormatLabels(want) << " did not reach the webhook firing within " << timeout_seconds
             << " s.\nWebhook received: " << DescribeAlerts(webhook.Received())
             << "\nPrometheus disk alerts: " << in_prometheus << "\n"
             << DescribeQuery(prometheus, evidence_promql);
    }
    if (nudge && SecondsSince(nudged) >= 1) {
      nudge();
      nudged = Clock::now();
    }
    SleepSeconds(0.1);
  }
  return ::testing::AssertionSuccess();
}

TEST(DiskAlertsE2eTest, FillingTablespaceRaisesSpaceLowThenCriticalAndFailingArchiveRaisesWalAlerts) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root to mount a tmpfs for the tablespace (CI runs the suite as root); running as uid "
                 << geteuid();
  }
  const auto test_start = Clock::now();
  // Declared first, destroyed last: after the server that has files open in it.
  TmpfsMount disk(kTmpfsBytes);
  if (!disk.ok() && disk.error_number() == EPERM) {
    GTEST_SKIP() << "root without the right to mount (a container without CAP_SYS_ADMIN?): " << disk.error();
  }
  ASSERT_TRUE(disk.ok()) << disk.error();
  const std::string device = DeviceOf(disk.path());

  const std::string rule_file = GenerateRules("disk_alerts_e2e_rules", kThresholds);
  auto webhook = WebhookReceiver::Start();
  auto alertmanager = AlertmanagerServer::Start(webhook->url());

  // Archiving works at first: one segment is archived during setup, so "none archived for long" is measured
  // from a real success, and an idle server whose last archive ages while nothing waits must stay quiet.
  auto pg = PostgresServer::Start({"archive_mode = on", "archive_command = '/bin/true'"});
  pg->Exec("CREATE TABLESPACE " + std::string(kTablespace) + " LOCATION '" + disk.path() + "'");
  pg->Exec("CREATE TABLE filler (pad text) WITH (autovacuum_enabled = off) TABLESPACE " + std::string(kTablespace));
  pg->Exec("CREATE TABLE wal_filler (id int)");
  const auto switch_wal = [&] {
    pg->Exec("INSERT INTO wal_filler VALUES (1)");
    pg->Exec("SELECT pg_switch_wal()");
  };
  switch_wal();
  ASSERT_TRUE(PollUntil([&] { return pg->Query("SELECT archived_count FROM pg_stat_archiver") != "0"; }, 20))
      << "archive_command '/bin/true' never archived";

  const std::string config = "targets:\n  - name: disk\n    dsn: \"" + pg->uri() +
                             "\"\ncollectors:\n  overrides:\n    wal_directory: {ttl: 0s}\n";
  auto agent = AgentProcess::Start({"--config.file=" + WriteTempFile("disk_alerts_e2e.yml", config)});
  const std::string job = "pgpulse-disk";
  const std::string instance = "127.0.0.1:" + std::to_string(agent->port());
  const Labels target = {{"job", job}, {"instance", instance}};
  Labels tablespace = target;
  tablespace.insert({{"kind", "tablespace"}, {"tablespace", kTablespace}, {"path", disk.path()}, {"device", device}});

  PrometheusServer::Options options;
  options.targets.push_back({job, instance});
  options.rule_files.push_back(rule_file);
  options.alertmanager_url = alertmanager->url();
  auto prometheus = PrometheusServer::Start(options);
  ASSERT_TRUE(prometheus->WaitForTargetsUp(15));

  ExpectAgentSeesWhatDfSees(*agent, disk.path(), device);
  ASSERT_FALSE(::testing::Test::HasFailure()) << "the agent does not see the tablespace's filesystem as df does";

  // The data directory and pg_wal sit on the host's disk: they must stay quiet too unless that disk is itself
  // low (then the rules are right to fire for them, and only the tablespace's alerts are ours to judge).
  const Space host = Statvfs(pg->Query("SHOW data_directory"));
  const bool host_roomy = host.avail / host.size > 0.25;
  if (!host_roomy) Note("the host's disk has " + std::to_string(host.avail / host.size) + " left: data/wal not judged");
  const auto ours = [&](const Labels& labels) {
    if (!LabelsInclude(labels, target)) return false;
    if (host_roomy) return true;
    auto kind = labels.find("kind");
    return kind == labels.end() || LabelsInclude(labels, tablespace);
  };
  Note("setup took " + std::to_string(SecondsSince(test_start)) + " s");

  // Healthy: what each rule reads is there, and for ~5 s of evaluations (every `for` is 2 s) none is pending.
  {
    SCOPED_TRACE("healthy");
    const std::string ts_avail = "pg_filesystem_avail_bytes{tablespace=\"" + std::string(kTablespace) + "\"}";
    for (const std::string& promql :
         {ts_avail, std::string("pg_wal_directory_size_bytes"), std::string("pg_archiver_last_attempt_failed == 0"),
          std::string("pg_archiver_pending_wal_files == 0"), std::string("pg_archiver_last_archived_age_seconds")}) {
      EXPECT_TRUE(PollUntil([&] { return !prometheus->Query(promql).empty(); }, 5))
          << DescribeQuery(*prometheus, promql);
    }
    std::set<std::string> seen;
    const auto window = Clock::now();
    while (SecondsSince(window) < 5) {
      for (const auto& a : prometheus->Alerts()) {
        if (kDiskAlerts.count(a.alertname) && ours(a.labels)) seen.insert(a.state + " " + FormatLabels(a.labels));
      }
      SleepSeconds(0.25);
    }
    SleepSeconds(1.5);  // group_wait
    for (const auto& s : seen) ADD_FAILURE() << "disk alert raised while healthy: " << s;
    for (const auto& a : webhook->Received()) {
      EXPECT_FALSE(kDiskAlerts.count(a.alertname) && ours(a.labels))
          << "notified while healthy: " << FormatLabels(a.labels);
    }
  }
  ASSERT_FALSE(::testing::Test::HasFailure()) << "no point filling a disk that already alerts";
  Note("healthy window passed at " + std::to_string(SecondsSince(test_start)) + " s");

  // Archiving fails from here on; every segment since stays in pg_wal.
  const auto caused = Clock::now();
  pg->Exec("ALTER SYSTEM SET archive_command = '/bin/false'");
  pg->Exec("SELECT pg_reload_conf()");
  ASSERT_TRUE(PollUntil(
      [&] {
        switch_wal();
        return pg->Query("SELECT failed_count FROM pg_stat_archiver") != "0";
      },
      20, 1))
      << "archive_command '/bin/false' never failed";

  // Past 80% used, short of 95%: SpaceLow (and the trend), not SpaceCritical.
  const double low = FillBelow(*pg, "filler", disk.path(), 0.12);
  Note("tablespace filled to " + std::to_string(1 - low) + " used at " + std::to_string(SecondsSince(caused)) + " s");
  ExpectAgentSeesWhatDfSees(*agent, disk.path(), device);
  const std::string ratio = "pg_filesystem_avail_bytes / pg_filesystem_size_bytes";
  {
    Labels want = tablespace;
    want["severity"] = "warning";
    ASSERT_TRUE(WaitForFiring(*webhook, *prometheus, "PostgreSQLFilesystemSpaceLow", want, ratio, 20));
    Note("PostgreSQLFilesystemSpaceLow at the webhook " + std::to_string(SecondsSince(caused)) + " s after causing");
  }
  for (const auto& a : prometheus->Alerts()) {
    EXPECT_FALSE(a.alertname == "PostgreSQLFilesystemSpaceCritical" && ours(a.labels))
        << "critical at " << 1 - low << " used: " << a.state << " " << FormatLabels(a.labels);
  }
  EXPECT_FALSE(Fired(*webhook, "PostgreSQLFilesystemSpaceCritical", target)) << DescribeAlerts(webhook->Received());
  {
    Labels want = tablespace;
    want["severity"] = "warning";
    EXPECT_TRUE(WaitForFiring(*webhook, *prometheus, "PostgreSQLFilesystemFillingUp", want,
                              "predict_linear(pg_filesystem_avail_bytes[20s], 60)", 15));
  }

  // Past 95% used.
  const auto critical_at = Clock::now();
  const double critical = FillBelow(*pg, "filler", disk.path(), 0.02);
  Note("tablespace filled to " + std::to_string(1 - critical) + " used");
  ExpectAgentSeesWhatDfSees(*agent, disk.path(), device);
  {
    Labels want = tablespace;
    want["severity"] = "critical";
    EXPECT_TRUE(WaitForFiring(*webhook, *prometheus, "PostgreSQLFilesystemSpaceCritical", want, ratio, 20));
    Note("PostgreSQLFilesystemSpaceCritical at the webhook " + std::to_string(SecondsSince(critical_at)) +
         " s after the second fill");
  }

  // pg_wal grew with the fills' WAL; a switch a second keeps it growing should the window have passed.
  {
    Labels want = target;
    want["severity"] = "critical";
    EXPECT_TRUE(WaitForFiring(*webhook, *prometheus, "PostgreSQLWALGrowingWhileArchivingFails", want,
                              "delta(pg_wal_directory_size_bytes[10s]) or pg_archiver_last_attempt_failed", 20,
                              switch_wal));
    want["severity"] = "warning";
    EXPECT_TRUE(WaitForFiring(*webhook, *prometheus, "PostgreSQLArchivingStale", want,
                              "pg_archiver_pending_wal_files or pg_archiver_last_archived_age_seconds", 15));
  }
  Note("all disk alerts at the webhook " + std::to_string(SecondsSince(caused)) + " s after causing");

  // The data directory and pg_wal are on the host's roomy disk: no space alert for them.
  for (const auto& a : webhook->Received()) {
    if (a.alertname.rfind("PostgreSQLFilesystem", 0) != 0 || !ours(a.labels)) continue;
    EXPECT_TRUE(LabelsInclude(a.labels, tablespace)) << a.alertname << " for another path: " << FormatLabels(a.labels);
  }
  // Rendered annotations: no template error, and the runbook anchor of the alert.
  for (const auto& a : webhook->Received()) {
    if (kDiskAlerts.count(a.alertname)) ExpectAnnotationsRendered(a);
  }
  Note("total " + std::to_string(SecondsSince(test_start)) + " s before teardown");
}

}  // namespace
}  // namespace pgpulse::testing
