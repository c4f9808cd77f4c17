// Disk headroom (queries/disk.yaml, the engine's `filesystem:` key) against a
// real server's files: the agent's numbers against df and statvfs, and every
// way the agent can be unable to see them, each said with its reason.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

// Space changes between the agent's look and ours (this server, other tests, the other builds).
constexpr double kAvailToleranceBytes = 256.0 * 1024 * 1024;

std::string Config(const std::string& dsn, const std::string& filesystem = "") {
  std::string cfg = "targets:\n  - name: main\n    dsn: \"" + dsn + "\"\n";
  if (!filesystem.empty()) cfg += "    filesystem: " + filesystem + "\n";
  return cfg + "collectors:\n  overrides:\n    tablespace_size: {ttl: 0s}\n    wal_directory: {ttl: 0s}\n";
}

std::string Uri(const PostgresServer& pg, const std::string& host = "127.0.0.1") {
  return "postgresql://postgres@" + host + ":" + std::to_string(pg.port()) + "/postgres";
}

std::unique_ptr<AgentProcess> StartAgent(const std::string& config_text, const std::string& name) {
  return AgentProcess::Start({"--config.file=" + WriteTempFile(name, config_text)});
}

// The labels of the filesystem collector's row for one path, as the exposition writes them.
std::string Row(const std::string& kind, const std::string& tablespace, const std::string& path,
                const std::string& reason, const std::string& device) {
  return "{kind=\"" + kind + "\",tablespace=\"" + tablespace + "\",path=\"" + path + "\",reason=\"" + reason +
         "\",device=\"" + device + "\"}";
}

std::string DeviceOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "?";
  return std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
}

// df -B1 --output=size,avail PATH: {size, avail} in bytes.
std::pair<double, double> Df(const std::string& path) {
  CommandResult r = RunCommand({"df", "-B1", "--output=size,avail", path});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  std::istringstream in(r.output);
  std::string header_size, header_avail;
  double size = NAN, avail = NAN;
  in >> header_size >> header_avail >> size >> avail;
  return {size, avail};
}

// A directory the server's OS user owns, for a tablespace.
std::string MakeOwnedDir(const std::string& path) {
  CommandResult r = RunCommand({"install", "-d", "-o", "postgres", "-m", "0700", path});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  return path;
}

// A temporary directory of the test's own, removed however the test ends.
struct TempDir {
  explicit TempDir(const std::string& stem) {
    std::string tmpl = "/tmp/" + stem + ".XXXXXX";
    if (mkdtemp(tmpl.data())) path = tmpl;
  }
  ~TempDir() {
    if (!path.empty()) RunCommand({"rm", "-rf", path});
  }
  std::string path;
};

bool CollectorOk(const std::string& body, const std::string& name) {
  return SampleValue(body, "pgpulse_collector_success{collector=\"" + name + "\",target=\"main\"}") == 1.0;
}

TEST(DiskHeadroom, FilesystemBytesMatchDfForDataWalAndTablespace) {
  auto pg = PostgresServer::Start();
  const std::string data = pg->Query("SHOW data_directory");
  const std::string ts_dir = MakeOwnedDir(pg->dir() + "/tablespace_one");
  pg->Exec("CREATE TABLESPACE one LOCATION '" + ts_dir + "'");
  pg->Exec("CREATE TABLE in_one TABLESPACE one AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g");

  auto agent = StartAgent(Config(Uri(*pg)), "disk-df.yml");
  auto [df_size, df_avail_before] = Df(data);
  std::string body = Scrape(*agent);
  auto [df_size_after, df_avail_after] = Df(data);
  ASSERT_TRUE(CollectorOk(body, "filesystem")) << body;

  const std::string device = DeviceOf(data);
  struct statvfs vfs {};
  ASSERT_EQ(statvfs(data.c_str(), &vfs), 0);
  for (const auto& [kind, ts, path] : {std::tuple<std::string, std::string, std::string>{"data", "", data},
                                       {"wal", "", data + "/pg_wal"},
                                       {"tablespace", "one", ts_dir}}) {
    SCOPED_TRACE(kind + " " + path);
    const std::string row = Row(kind, ts, path, "", DeviceOf(path));
    EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + row), 1) << body;
    // The size of a filesystem does not change under us: exactly df's and statvfs's.
    EXPECT_EQ(SampleValue(body, "pg_filesystem_size_bytes" + row), df_size);
    EXPECT_EQ(SampleValue(body, "pg_filesystem_size_bytes" + row),
              static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize));
    auto avail = SampleValue(body, "pg_filesystem_avail_bytes" + row);
    ASSERT_TRUE(avail.has_value());
    EXPECT_GE(*avail, std::min(df_avail_before, df_avail_after) - kAvailToleranceBytes);
    EXPECT_LE(*avail, std::max(df_avail_before, df_avail_after) + kAvailToleranceBytes);
    auto free = SampleValue(body, "pg_filesystem_free_bytes" + row);
    ASSERT_TRUE(free.has_value());
    EXPECT_GE(*free, *avail) << "free counts root's reserve, avail does not";
  }
  EXPECT_EQ(df_size, df_size_after);

  // From SQL, which works wherever the agent runs.
  EXPECT_EQ(SampleValue(body, "pg_tablespace_size_bytes{tablespace=\"one\",path=\"" + ts_dir + "\"}"),
            std::stod(pg->Query("SELECT pg_tablespace_size('one')")));
  EXPECT_GT(std::stod(pg->Query("SELECT pg_tablespace_size('one')")), 1e6) << "the table lives there";
  EXPECT_TRUE(SampleValue(body, "pg_tablespace_size_bytes{tablespace=\"pg_default\",path=\"\"}").has_value());

  // pg_wal's size against pg_ls_waldir() read right before and after: nothing writes WAL meanwhile but
  // the server's own housekeeping, so the agent's number lies between the two.
  const std::string wal_sql = "SELECT sum(size) FROM pg_ls_waldir()";
  double wal_low = std::stod(pg->Query(wal_sql));
  body = Scrape(*agent);
  double wal_high = std::stod(pg->Query(wal_sql));
  auto wal = SampleValue(body, "pg_wal_directory_size_bytes");
  ASSERT_TRUE(wal.has_value());
  EXPECT_GE(*wal, std::min(wal_low, wal_high));
  EXPECT_LE(*wal, std::max(wal_low, wal_high));
}

TEST(DiskHeadroom, UnixSocketConnectionIsLocal) {
  auto pg = PostgresServer::Start();
  const std::string data = pg->Query("SHOW data_directory");
  auto agent =
      StartAgent(Config("host=" + pg->dir() + " port=" + std::to_string(pg->port()) + " user=postgres dbname=postgres"),
                 "disk-socket.yml");
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "", DeviceOf(data))), 1) << body;
}

TEST(DiskHeadroom, ConfigSaysNotVisibleAndEverySurfaceSaysWhy) {
  auto pg = PostgresServer::Start();
  const std::string data = pg->Query("SHOW data_directory");
  const std::string cfg = Config(Uri(*pg), "{visible: no}");
  auto agent = StartAgent(cfg, "disk-no.yml");
  std::string body = Scrape(*agent);
  EXPECT_TRUE(CollectorOk(body, "filesystem")) << body;
  EXPECT_EQ(SampleValue(body, "pg_up"), 1);
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "disabled", "")), 0) << body;
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("wal", "", data + "/pg_wal", "disabled", "")), 0);
  EXPECT_EQ(CountSamples(body, "pg_filesystem_size_bytes"), 0) << "nothing measured, nothing reported";
  EXPECT_EQ(CountSamples(body, "pg_filesystem_avail_bytes"), 0);
  // SQL-side sizes do not depend on it.
  EXPECT_GT(CountSamples(body, "pg_tablespace_size_bytes"), 0);

  const std::string reason = "filesystem not looked at: targets[main].filesystem.visible is no";
  HttpResponse landing = HttpGet(agent->url("/"));
  EXPECT_NE(landing.body.find(reason), std::string::npos) << landing.body;
  CommandResult check = AgentProcess::Run({"check", "--connect", "--config.file=" + WriteTempFile("disk-no.yml", cfg)});
  EXPECT_EQ(check.exit_status, 0) << check.output;
  EXPECT_NE(check.output.find(reason), std::string::npos) << check.output;
}

// A pod that mounts the server's volume elsewhere: path_prefix. A wrong mount (another server's data
// directory, or a directory that is no running server's) must not be reported as this server's disk.
TEST(DiskHeadroom, PathPrefixIsCheckedAgainstPostmasterPid) {
  auto pg = PostgresServer::Start();
  const std::string data = pg->Query("SHOW data_directory");
  const std::string pid_file = data + "/postmaster.pid";

  // The right volume: a bind-free stand-in is a symlink tree whose data directory is the real one.
  TempDir prefix_dir("pgpulse-disk-prefix");
  ASSERT_FALSE(prefix_dir.path.empty());
  const std::string prefix = prefix_dir.path;
  const std::string parent = data.substr(0, data.rfind('/'));
  ASSERT_EQ(std::system(("mkdir -p '" + prefix + parent + "' && ln -s '" + data + "' '" + prefix + data + "'").c_str()),
            0);
  auto agent = StartAgent(Config(Uri(*pg), "{visible: auto, path_prefix: " + prefix + "}"), "disk-prefix.yml");
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "", DeviceOf(data))), 1) << body;
  agent.reset();

  // Another server's data directory at that path: postmaster.pid names another port.
  ASSERT_EQ(std::system(("rm '" + prefix + data + "' && mkdir '" + prefix + data + "'").c_str()), 0);
  {
    std::ifstream real(pid_file);
    std::ofstream fake(prefix + pid_file);
    std::string line;
    for (int i = 1; std::getline(real, line); ++i) fake << (i == 4 ? std::to_string(pg->port() + 1) : line) << "\n";
  }
  agent = StartAgent(Config(Uri(*pg), "{path_prefix: " + prefix + "}"), "disk-prefix.yml");
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "other_server", "")), 0) << body;
  EXPECT_EQ(CountSamples(body, "pg_filesystem_size_bytes"), 0);
  EXPECT_NE(HttpGet(agent->url("/")).body.find("belongs to another server (port " + std::to_string(pg->port() + 1)),
            std::string::npos);
  agent.reset();

  // A directory that is no running server's: no postmaster.pid at all.
  ASSERT_EQ(std::remove((prefix + pid_file).c_str()), 0);
  agent = StartAgent(Config(Uri(*pg), "{path_prefix: " + prefix + "}"), "disk-prefix.yml");
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "other_server", "")), 0) << body;
}

// The agent as root sees everything; as another OS user it sees the data directory's filesystem but not
// pg_wal inside the 0700 data directory, and says so.
TEST(DiskHeadroom, AnotherOsUserCannotSeePgWalAndIsToldWhy) {
  auto pg = PostgresServer::Start();
  const std::string data = pg->Query("SHOW data_directory");
  // A copy of the binary where user nobody can run it (the build tree may sit in root's home).
  TempDir bin("pgpulse-disk-bin");
  ASSERT_FALSE(bin.path.empty());
  const std::string bin_dir = bin.path;
  ASSERT_EQ(std::system(("chmod 755 '" + bin_dir + "' && cp '" PGPULSE_BINARY "' '" + bin_dir + "/pgpulse'").c_str()),
            0);
  CommandResult r = RunCommand(
      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin_dir + "/pgpulse", "check", "--connect"},
      {{"DATA_SOURCE_NAME", Uri(*pg)}});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  size_t at = r.output.find("\nfilesystem ");
  ASSERT_NE(at, std::string::npos) << r.output;
  std::string line = r.output.substr(at + 1, r.output.find('\n', at + 1) - at - 1);
  EXPECT_NE(line.find(" ok "), std::string::npos) << line;
  EXPECT_NE(line.find("cannot see " + data + "/pg_wal: Permission denied"), std::string::npos) << line;
  EXPECT_EQ(line.find("cannot see " + data + ":"), std::string::npos) << "the data directory itself is visible";
}

// Reached over a non-loopback address of this machine: auto does not trust it, `visible: yes` does.
TEST(DiskHeadroom, NonLoopbackAddressIsNotLocalUnlessConfigured) {
  std::string address;
  ifaddrs* list = nullptr;
  ASSERT_EQ(getifaddrs(&list), 0);
  for (ifaddrs* i = list; i && address.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
      continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    address = buf;
  }
  freeifaddrs(list);
  if (address.empty()) GTEST_SKIP() << "this machine has no non-loopback IPv4 address";

  auto pg = PostgresServer::Start({"listen_addresses = '127.0.0.1," + address + "'"});
  {
    std::ofstream hba(pg->dir() + "/data/pg_hba.conf", std::ios::app);
    hba << "host all all " << address << "/32 trust\n";
  }
  pg->Exec("SELECT pg_reload_conf()");
  const std::string data = pg->Query("SHOW data_directory");
  auto agent = StartAgent(Config(Uri(*pg, address)), "disk-remote.yml");
  std::string body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_up"), 1) << agent->Log();
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "not_local", "")), 0) << body;
  EXPECT_NE(HttpGet(agent->url("/")).body.find("the server is reached at " + address), std::string::npos);
  agent.reset();

  agent = StartAgent(Config(Uri(*pg, address), "{visible: yes}"), "disk-remote.yml");
  body = Scrape(*agent);
  EXPECT_EQ(SampleValue(body, "pg_filesystem_visible" + Row("data", "", data, "", DeviceOf(data))), 1) << body;
}

}  // namespace
}  // namespace pgpulse::testing
