// What packaging/ ships agrees with the agent and with the repository: every YAML document parses; the Debian
// default config and the configs in the compose demo and the Kubernetes manifests pass `pgpulse check`; the systemd
// unit is hardened (and systemd-analyze accepts it where it is installed); every path the Dockerfile copies or the
// compose file mounts exists; ports and paths are the agent's (9679, /metrics, /probe, /healthz, /readyz); the
// Kubernetes containers run as non-root on a read-only root filesystem. No servers: files are read from the source
// tree and configs are checked offline. The .deb itself is tested by packaging/tests/deb_test.sh.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/check.h"
#include "tests/harness/agent_process.h"

namespace pgpulse::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kSourceDir = PGPULSE_SOURCE_DIR;
const fs::path kPackaging = kSourceDir / "packaging";
constexpr int kAgentPort = 9679;
const std::set<std::string> kProbePaths = {"/healthz", "/readyz"};
const std::set<std::string> kScrapePaths = {"/metrics", "/probe"};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Every document of a YAML file; a parse error fails the test with the file's name.
std::vector<YAML::Node> LoadAll(const fs::path& path) {
  try {
    return YAML::LoadAll(ReadFile(path));
  } catch (const YAML::Exception& e) {
    ADD_FAILURE() << path << ":" << e.mark.line + 1 << ":" << e.mark.column + 1 << ": " << e.msg;
    return {};
  }
}

YAML::Node Load(const fs::path& path) {
  auto docs = LoadAll(path);
  EXPECT_EQ(docs.size(), 1u) << path;
  return docs.empty() ? YAML::Node() : docs.front();
}

std::string Str(const YAML::Node& n) { return n && n.IsScalar() ? n.Scalar() : ""; }

// A scratch directory removed when the test ends, also when it fails.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "pgpulse-packaging-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data()) ? fs::path(tmpl) : fs::path();
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// `pgpulse check` (offline) of a config text; `files` maps paths the config names (password files, definition
// directories) to content in the scratch directory, or "" for an empty directory.
struct CheckResult {
  int status = -1;
  std::string out, err;
};
CheckResult CheckConfig(std::string config, const std::map<std::string, std::optional<std::string>>& files) {
  ScratchDir dir;
  int n = 0;
  std::vector<std::pair<std::string, std::optional<std::string>>> longest_first(files.begin(), files.end());
  std::sort(longest_first.begin(), longest_first.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [path, content] : longest_first) {
    fs::path local = dir.path() / ("f" + std::to_string(n++));
    if (content) WriteFile(local, *content);
    else fs::create_directories(local);
    for (size_t at = config.find(path); at != std::string::npos; at = config.find(path, at + 1)) {
      config.replace(at, path.size(), local.string());
    }
  }
  WriteFile(dir.path() / "pgpulse.yml", config);
  std::ostringstream out, err;
  CheckResult r;
  agent::AgentOptions options;
  options.config_file = (dir.path() / "pgpulse.yml").string();
  r.status = agent::RunCheck(options, false, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// A shell command's exit status and output (stdout and stderr).
CommandResult Shell(const std::string& command) { return RunCommand({"sh", "-c", command}); }

bool Same(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec);
}

bool OnPath(const std::string& tool) { return Shell("command -v " + tool).exit_status == 0; }

// ---------------------------------------------------------------------------------------------------------------
// Debian package: default config and systemd unit

TEST(PackagingTest, DebDefaultConfigIsOneTargetWithPasswordFileAndNoDiscovery) {
  YAML::Node cfg = Load(kPackaging / "deb/pgpulse.yml");
  ASSERT_TRUE(cfg["targets"].IsSequence());
  ASSERT_EQ(cfg["targets"].size(), 1u);
  YAML::Node t = cfg["targets"][0];
  EXPECT_TRUE(std::regex_search(Str(t["dsn"]), std::regex("^postgresql://[^:@/]+@")))
      << "a user and no password in the DSN: " << Str(t["dsn"]);
  EXPECT_EQ(Str(t["password_file"]), "/etc/pgpulse/password");
  EXPECT_EQ(Str(t["databases"]["discover"]), "false");
  EXPECT_EQ(cfg["auth_modules"].size(), 0u) << "no ad-hoc probing by default";
  ASSERT_TRUE(cfg["collectors"]["directories"].IsSequence());
  EXPECT_EQ(Str(cfg["collectors"]["directories"][0]), "/etc/pgpulse/queries.d");
}

TEST(PackagingTest, DebDefaultConfigDocumentsEveryKey) {
  // Every key the config parser accepts (agent/config.cc), set or in a comment, each with an explanation.
  const std::string text = ReadFile(kPackaging / "deb/pgpulse.yml");
  for (const char* key : {"targets",
                          "name",
                          "dsn",
                          "password_file",
                          "labels",
                          "databases",
                          "discover",
                          "include",
                          "exclude",
                          "refresh",
                          "max_connections",
                          "auth_modules",
                          "user",
                          "options",
                          "allowed_targets",
                          "allow_unverified_server",
                          "max_probe_targets",
                          "collectors",
                          "directories",
                          "disable",
                          "enable",
                          "overrides",
                          "ttl",
                          "timeout",
                          "max_series",
                          "max_rows",
                          "scrape",
                          "timeout_offset",
                          "collect_on_metrics_path",
                          "connect_timeout",
                          "type",
                          "filesystem",
                          "visible",
                          "path_prefix",
                          "prepared_statements",
                          "pgbackrest",
                          "command",
                          "stanza",
                          "config",
                          "args"}) {
    std::regex mentioned("(^|[\\s{,#])" + std::string(key) + ":");
    EXPECT_TRUE(std::regex_search(text, mentioned)) << "packaging/deb/pgpulse.yml does not mention '" << key << "'";
  }
  std::istringstream lines(text);
  std::string line, previous;
  for (int n = 1; std::getline(lines, line); ++n, previous = line) {
    std::smatch m;
    if (!std::regex_match(line, m, std::regex(R"(\s*-?\s*([a-z_]+):.*)"))) continue;
    bool commented = line.find('#') != std::string::npos || previous.find('#') != std::string::npos;
    EXPECT_TRUE(commented) << "packaging/deb/pgpulse.yml:" << n << ": '" << m[1] << "' has no comment";
  }
}

TEST(PackagingTest, DebDefaultConfigPassesCheck) {
  CheckResult r = CheckConfig(ReadFile(kPackaging / "deb/pgpulse.yml"),
                              {{"/etc/pgpulse/password", "a-password\n"}, {"/etc/pgpulse/queries.d", std::nullopt}});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("1 target(s)"), std::string::npos) << r.out;
}

std::multimap<std::string, std::string> ReadUnit(const fs::path& path) {
  std::multimap<std::string, std::string> unit;
  std::istringstream in(ReadFile(path));
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    size_t eq = line.find('=');
    if (eq != std::string::npos) unit.emplace(section + "." + line.substr(0, eq), line.substr(eq + 1));
  }
  return unit;
}

TEST(PackagingTest, SystemdUnitIsHardened) {
  auto unit = ReadUnit(kPackaging / "deb/pgpulse.service");
  auto one = [&](const std::string& key) {
    auto [b, e] = unit.equal_range(key);
    EXPECT_EQ(std::distance(b, e), 1) << key;
    return b == e ? std::string("(unset)") : b->second;
  };
  EXPECT_EQ(one("Service.ExecStart").rfind("/usr/bin/pgpulse --config.file=/etc/pgpulse/pgpulse.yml", 0), 0u);
  EXPECT_EQ(one("Service.ExecReload"), "/bin/kill -HUP $MAINPID");
  EXPECT_EQ(one("Service.EnvironmentFile"), "-/etc/default/pgpulse");
  EXPECT_EQ(one("Service.Restart"), "on-failure");
  for (const auto& [key, value] :
       std::map<std::string, std::string>{{"NoNewPrivileges", "yes"},
                                          {"ProtectSystem", "strict"},
                                          {"ProtectHome", "yes"},
                                          {"PrivateTmp", "yes"},
                                          {"PrivateDevices", "yes"},
                                          {"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
                                          {"CapabilityBoundingSet", ""}}) {
    EXPECT_EQ(one("Service." + key), value) << key;
  }
  auto [b, e] = unit.equal_range("Service.SystemCallFilter");
  bool system_service = false;
  for (auto it = b; it != e; ++it) system_service |= it->second == "@system-service";
  EXPECT_TRUE(system_service) << "SystemCallFilter=@system-service";
  bool dynamic = unit.count("Service.DynamicUser") && unit.find("Service.DynamicUser")->second == "yes";
  EXPECT_TRUE(dynamic || (unit.count("Service.User") && unit.find("Service.User")->second != "root"))
      << "runs as DynamicUser or a dedicated user";
  EXPECT_EQ(one("Install.WantedBy"), "multi-user.target");
}

// systemd-analyze verify wants the binary to exist: a copy of the unit runs the built one. The installed unit is
// verified by packaging/tests/deb_test.sh.
TEST(PackagingTest, SystemdAnalyzeAcceptsUnit) {
  if (!OnPath("systemd-analyze")) GTEST_SKIP() << "systemd-analyze not installed (Debian package systemd)";
  ScratchDir dir;
  std::string unit = ReadFile(kPackaging / "deb/pgpulse.service");
  const std::string installed = "/usr/bin/pgpulse";
  unit.replace(unit.find(installed), installed.size(), PGPULSE_BINARY);
  fs::path copy = dir.path() / "pgpulse.service";
  WriteFile(copy, unit);
  auto [status, output] = Shell("systemd-analyze verify --man=no " + copy.string());
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output.find("pgpulse.service"), std::string::npos) << output;
  // Exposure 0 (locked down) to 10, --threshold in tenths.
  auto [sec_status, sec_output] = Shell("systemd-analyze security --offline=yes --threshold=20 " + copy.string());
  EXPECT_EQ(sec_status, 0) << sec_output;
}

// ---------------------------------------------------------------------------------------------------------------
// Container image and compose demo

struct DockerInstruction {
  int line;
  std::string op;  // upper case
  std::string args;
  int stage;  // 1-based
};

std::vector<DockerInstruction> ReadDockerfile(const fs::path& path) {
  std::vector<DockerInstruction> out;
  std::istringstream in(ReadFile(path));
  std::string line, joined;
  int stage = 0, n = 0, start = 0;
  while (std::getline(in, line)) {
    ++n;
    if (joined.empty()) {
      start = n;
      size_t first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
    }
    if (!line.empty() && line.back() == '\\') {
      joined += line.substr(0, line.size() - 1) + " ";
      continue;
    }
    joined += line;
    std::istringstream words(joined);
    DockerInstruction ins{start, "", "", 0};
    words >> ins.op;
    for (char& c : ins.op) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::getline(words, ins.args);
    ins.args.erase(0, ins.args.find_first_not_of(' '));
    if (ins.op == "FROM") ++stage;
    ins.stage = stage;
    out.push_back(ins);
    joined.clear();
  }
  return out;
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

TEST(PackagingTest, DockerfileBuildsOnDebianAndRunsAsNonRoot) {
  const fs::path dockerfile = kPackaging / "docker/Dockerfile";
  auto instructions = ReadDockerfile(dockerfile);
  ASSERT_FALSE(instructions.empty());
  const int stages = instructions.back().stage;  // the last one is the image
  std::string user, entrypoint;
  std::set<std::string> exposed;
  for (const auto& ins : instructions) {
    std::string where = "Dockerfile:" + std::to_string(ins.line);
    if (ins.op == "FROM") {
      EXPECT_EQ(Words(ins.args).at(0), "debian:12-slim") << where;
    }
    // The build context is the repository root (compose: context ../..).
    if ((ins.op == "COPY" || ins.op == "ADD") && ins.args.find("--from=") == std::string::npos) {
      auto words = Words(ins.args);
      for (size_t i = 0; i + 1 < words.size(); ++i) {
        if (words[i].rfind("--", 0) == 0) continue;
        EXPECT_TRUE(fs::exists(kSourceDir / words[i]))
            << where << ": COPY source " << words[i] << " is not in the repository";
      }
    }
    if (ins.stage == stages && ins.op == "USER") user = ins.args;
    if (ins.stage == stages && ins.op == "EXPOSE") exposed.insert(ins.args);
    if (ins.stage == stages && ins.op == "ENTRYPOINT") entrypoint = ins.args;
    if (ins.stage == stages && ins.op == "RUN") {
      EXPECT_FALSE(std::regex_search(ins.args, std::regex(R"(\S+-dev\b)"))) << where << ": -dev package at run time";
    }
  }
  EXPECT_EQ(stages, 2) << "a build stage and a runtime stage";
  std::string uid = user.substr(0, user.find(':'));
  EXPECT_FALSE(uid.empty() || uid == "0" || uid == "root") << "USER " << user;
  EXPECT_EQ(exposed, std::set<std::string>{std::to_string(kAgentPort)});
  EXPECT_EQ(entrypoint, R"(["/usr/bin/pgpulse"])");
}

// Compose's short volume syntax, SOURCE:TARGET[:MODE]; only bind mounts (a path source) are returned.
std::vector<std::pair<fs::path, std::string>> BindMounts(const YAML::Node& service, const fs::path& base) {
  std::vector<std::pair<fs::path, std::string>> out;
  for (const YAML::Node& v : service["volumes"]) {
    std::string spec = Str(v);
    size_t colon = spec.find(':');
    if (colon == std::string::npos) continue;
    std::string source = spec.substr(0, colon), target = spec.substr(colon + 1);
    target = target.substr(0, target.find(':'));
    if (source.rfind(".", 0) != 0 && source.rfind("/", 0) != 0) continue;
    out.emplace_back((base / source).lexically_normal(), target);
  }
  return out;
}

// Where a path inside a container comes from on the host, through the bind mounts (longest target first).
std::optional<fs::path> HostPath(const std::vector<std::pair<fs::path, std::string>>& mounts, const std::string& path) {
  std::optional<fs::path> best;
  size_t best_len = 0;
  for (const auto& [source, target] : mounts) {
    if ((path == target || path.rfind(target + "/", 0) == 0) && target.size() >= best_len) {
      best = path == target ? source : source / path.substr(target.size() + 1);
      best_len = target.size();
    }
  }
  return best;
}

std::string FlagValue(const YAML::Node& command, const std::string& flag) {
  for (const YAML::Node& arg : command) {
    std::string a = Str(arg);
    if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
  }
  return "";
}

class PackagingComposeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    compose_ = Load(base_ / "compose.yaml");
    ASSERT_TRUE(compose_["services"].IsMap());
  }
  YAML::Node Service(const std::string& name) {
    YAML::Node s = compose_["services"][name];
    EXPECT_TRUE(s.IsMap()) << "compose.yaml has no service " << name;
    return s;
  }
  const fs::path base_ = kPackaging / "docker";
  YAML::Node compose_;
};

TEST_F(PackagingComposeTest, EveryMountedBuiltAndSecretPathExists) {
  for (auto it = compose_["services"].begin(); it != compose_["services"].end(); ++it) {
    std::string name = Str(it->first);
    for (const auto& [source, target] : BindMounts(it->second, base_))
      EXPECT_TRUE(fs::exists(source)) << "service " << name << " mounts " << source << " (missing) at " << target;
    if (YAML::Node build = it->second["build"]) {
      fs::path context = (base_ / Str(build["context"])).lexically_normal();
      EXPECT_TRUE(Same(context, kSourceDir)) << "service " << name << ": build context is the repository";
      EXPECT_TRUE(fs::exists(context / Str(build["dockerfile"]))) << "service " << name;
    }
    for (const YAML::Node& secret : it->second["secrets"])
      EXPECT_TRUE(compose_["secrets"][Str(secret)]) << "service " << name << " uses undeclared secret " << Str(secret);
  }
  for (auto it = compose_["secrets"].begin(); it != compose_["secrets"].end(); ++it)
    EXPECT_TRUE(fs::exists(base_ / Str(it->second["file"]))) << "secret " << Str(it->first);
}

TEST_F(PackagingComposeTest, AgentConfigPassesCheckWithItsSecret) {
  YAML::Node pgpulse = Service("pgpulse");
  std::string config_in_container = FlagValue(pgpulse["command"], "--config.file");
  ASSERT_FALSE(config_in_container.empty()) << "pgpulse's command has --config.file";
  auto config = HostPath(BindMounts(pgpulse, base_), config_in_container);
  ASSERT_TRUE(config && fs::exists(*config)) << config_in_container << " is not mounted from the repository";
  std::map<std::string, std::optional<std::string>> files;
  for (const YAML::Node& secret : pgpulse["secrets"])
    files["/run/secrets/" + Str(secret)] = ReadFile(base_ / Str(compose_["secrets"][Str(secret)]["file"]));
  CheckResult r = CheckConfig(ReadFile(*config), files);
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(PackagingComposeTest, PortsAndScrapeMatchTheAgent) {
  bool published = false;
  for (const YAML::Node& p : Service("pgpulse")["ports"]) {
    std::string spec = Str(p);
    published |= spec.size() > 5 && spec.substr(spec.size() - 5) == ":" + std::to_string(kAgentPort);
  }
  EXPECT_TRUE(published) << "pgpulse publishes container port 9679";

  YAML::Node prometheus = Service("prometheus");
  auto mounts = BindMounts(prometheus, base_);
  std::string config_in_container = FlagValue(prometheus["command"], "--config.file");
  auto config_path = HostPath(mounts, config_in_container);
  ASSERT_TRUE(config_path && fs::exists(*config_path)) << config_in_container << " is not mounted";
  YAML::Node config = Load(*config_path);
  // Rule files resolve inside the container to a mounted file of the repository.
  for (const YAML::Node& rule : config["rule_files"]) {
    std::string in_container = (fs::path(config_in_container).parent_path() / Str(rule)).lexically_normal().string();
    auto host = HostPath(mounts, in_container);
    EXPECT_TRUE(host && fs::exists(*host)) << "rule file " << Str(rule) << " (" << in_container << ") is not mounted";
  }
  bool scrapes_agent = false;
  for (const YAML::Node& job : config["scrape_configs"]) {
    std::string path = job["metrics_path"] ? Str(job["metrics_path"]) : "/metrics";
    for (const YAML::Node& sc : job["static_configs"]) {
      for (const YAML::Node& t : sc["targets"]) {
        if (Str(t) == "pgpulse:" + std::to_string(kAgentPort)) {
          scrapes_agent = true;
          EXPECT_EQ(path, "/metrics") << "job " << Str(job["job_name"]);
          EXPECT_EQ(Str(job["job_name"]).rfind("pgpulse", 0), 0u) << "the shipped alerts select job=~\"pgpulse.*\"";
        }
      }
    }
  }
  EXPECT_TRUE(scrapes_agent) << "prometheus.yml scrapes pgpulse:9679";
  for (const YAML::Node& am : config["alerting"]["alertmanagers"])
    for (const YAML::Node& sc : am["static_configs"])
      for (const YAML::Node& t : sc["targets"])
        EXPECT_TRUE(Service(Str(t).substr(0, Str(t).find(':'))).IsMap()) << "alertmanager target " << Str(t);

  YAML::Node alertmanager = Service("alertmanager");
  auto am_config = HostPath(BindMounts(alertmanager, base_), FlagValue(alertmanager["command"], "--config.file"));
  EXPECT_TRUE(am_config && fs::exists(*am_config)) << "alertmanager's --config.file is mounted";
}

TEST_F(PackagingComposeTest, GrafanaProvisioningMatchesMounts) {
  auto mounts = BindMounts(Service("grafana"), base_);
  auto provisioning = HostPath(mounts, "/etc/grafana/provisioning/dashboards");
  ASSERT_TRUE(provisioning) << "Grafana mounts packaging/grafana/provisioning/dashboards";
  auto dashboards = HostPath(mounts, "/var/lib/grafana/dashboards/pgpulse");
  ASSERT_TRUE(dashboards) << "Grafana mounts dashboards/";
  EXPECT_TRUE(Same(*dashboards, kSourceDir / "dashboards"));
  if (!fs::exists(*provisioning)) GTEST_SKIP() << *provisioning << " does not exist yet";
  for (const auto& entry : fs::directory_iterator(*provisioning)) {
    for (const YAML::Node& provider : Load(entry.path())["providers"]) {
      std::string path = Str(provider["options"]["path"]);
      auto host = HostPath(mounts, path);
      EXPECT_TRUE(host && Same(*host, kSourceDir / "dashboards"))
          << entry.path() << ": provider path " << path << " is not the mounted dashboards/";
    }
  }
  auto datasources = HostPath(mounts, "/etc/grafana/provisioning/datasources");
  ASSERT_TRUE(datasources && fs::exists(*datasources));
  for (const auto& entry : fs::directory_iterator(*datasources)) {
    for (const YAML::Node& ds : Load(entry.path())["datasources"]) {
      std::smatch m;
      std::string url = Str(ds["url"]);
      ASSERT_TRUE(std::regex_match(url, m, std::regex(R"(https?://([^:/]+)(:(\d+))?/?)"))) << url;
      EXPECT_TRUE(Service(m[1]).IsMap()) << entry.path() << ": datasource host " << m[1];
      EXPECT_EQ(m[3], "9090") << url;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes manifests

struct Manifest {
  fs::path file;
  YAML::Node doc;
  std::string kind() const { return Str(doc["kind"]); }
  std::string name() const { return Str(doc["metadata"]["name"]); }
};

class PackagingKubernetesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& entry : fs::recursive_directory_iterator(kPackaging / "kubernetes")) {
      std::string ext = entry.path().extension().string();
      if (ext != ".yaml" && ext != ".yml") continue;
      for (const YAML::Node& doc : LoadAll(entry.path())) {
        if (doc.IsNull()) continue;
        manifests_.push_back({entry.path(), doc});
      }
    }
    ASSERT_FALSE(manifests_.empty());
  }
  std::vector<Manifest> Of(const std::string& kind) const {
    std::vector<Manifest> out;
    for (const auto& m : manifests_)
      if (m.kind() == kind) out.push_back(m);
    return out;
  }
  const Manifest* Find(const fs::path& dir, const std::string& kind, const std::string& name) const {
    for (const auto& m : manifests_)
      if (m.file.parent_path() == dir && m.kind() == kind && m.name() == name) return &m;
    return nullptr;
  }
  // The pod templates of workloads, with the file they come from.
  std::vector<std::pair<Manifest, YAML::Node>> PodSpecs() const {
    std::vector<std::pair<Manifest, YAML::Node>> out;
    for (const auto& m : manifests_) {
      if (m.kind() == "Pod") out.emplace_back(m, m.doc["spec"]);
      if (m.kind() == "Deployment" || m.kind() == "StatefulSet" || m.kind() == "DaemonSet")
        out.emplace_back(m, m.doc["spec"]["template"]["spec"]);
    }
    return out;
  }
  static bool IsAgent(const YAML::Node& container) { return Str(container["image"]).rfind("pgpulse", 0) == 0; }
  // Path -> content of every ConfigMap and Secret key mounted in a container, from the objects in `dir`.
  std::map<std::string, std::string> MountedFiles(const fs::path& dir, const YAML::Node& pod,
                                                  const YAML::Node& container) const {
    std::map<std::string, std::string> files;
    for (const YAML::Node& vm : container["volumeMounts"]) {
      for (const YAML::Node& v : pod["volumes"]) {
        if (Str(v["name"]) != Str(vm["name"])) continue;
        const bool config_map = static_cast<bool>(v["configMap"]);
        if (!config_map && !v["secret"]) continue;
        const std::string kind = config_map ? "ConfigMap" : "Secret";
        const YAML::Node source = config_map ? v["configMap"] : v["secret"];
        const std::string name = Str(config_map ? source["name"] : source["secretName"]);
        const Manifest* object = Find(dir, kind, name);
        EXPECT_TRUE(object) << dir << ": " << kind << " " << name << " is not in the manifests";
        if (!object) continue;
        const YAML::Node data = object->doc[config_map ? "data" : "stringData"];
        for (auto it = data.begin(); it != data.end(); ++it) {
          std::string key = Str(it->first), path = source["items"] ? "" : key;
          for (const YAML::Node& item : source["items"])
            if (Str(item["key"]) == key) path = Str(item["path"]);
          if (!path.empty()) files[Str(vm["mountPath"]) + "/" + path] = Str(it->second);
        }
      }
    }
    return files;
  }
  std::vector<Manifest> manifests_;
};

TEST_F(PackagingKubernetesTest, EveryDocumentIsAnObjectOrAKustomization) {
  for (const auto& m : manifests_) {
    EXPECT_FALSE(Str(m.doc["apiVersion"]).empty()) << m.file;
    EXPECT_FALSE(m.kind().empty()) << m.file;
    if (m.kind() == "Kustomization") {
      for (const YAML::Node& r : m.doc["resources"]) {
        fs::path p = (m.file.parent_path() / Str(r)).lexically_normal();
        EXPECT_TRUE(fs::is_regular_file(p) || fs::exists(p / "kustomization.yaml"))
            << m.file << ": resource " << Str(r) << " is neither a file nor a directory with kustomization.yaml";
      }
    } else {
      EXPECT_FALSE(m.name().empty()) << m.file << ": " << m.kind() << " without metadata.name";
    }
  }
}

TEST_F(PackagingKubernetesTest, PrometheusRuleIsTheGeneratedOne) {
  // Not maintained twice: no PrometheusRule under packaging/kubernetes, the kustomizations use alerts/.
  EXPECT_TRUE(Of("PrometheusRule").empty()) << "a copy of the PrometheusRule under packaging/kubernetes";
  const fs::path alerts = kSourceDir / "alerts";
  for (const auto& k : Of("Kustomization")) {
    bool uses_alerts = false;
    for (const YAML::Node& r : k.doc["resources"]) {
      uses_alerts |= Same(k.file.parent_path() / Str(r), alerts);
    }
    EXPECT_TRUE(uses_alerts) << k.file << " does not include ../../../alerts";
  }
  YAML::Node base = Load(alerts / "kustomization.yaml");
  bool lists_rule = false;
  for (const YAML::Node& r : base["resources"]) lists_rule |= Str(r) == "pgpulse-prometheusrule.yaml";
  EXPECT_TRUE(lists_rule) << "alerts/kustomization.yaml lists pgpulse-prometheusrule.yaml";
}

TEST_F(PackagingKubernetesTest, AgentContainersUseAgentPortsAndProbePaths) {
  int agents = 0;
  for (const auto& [m, pod] : PodSpecs()) {
    for (const YAML::Node& c : pod["containers"]) {
      if (!IsAgent(c)) continue;
      ++agents;
      std::string where = m.file.string() + ": " + m.name() + "/" + Str(c["name"]);
      std::map<std::string, int> named;
      for (const YAML::Node& p : c["ports"]) named[Str(p["name"])] = p["containerPort"].as<int>();
      ASSERT_EQ(named.size(), 1u) << where;
      EXPECT_EQ(named.begin()->second, kAgentPort) << where;
      EXPECT_TRUE(c["livenessProbe"]) << where << ": no liveness probe";
      for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
        if (!c[probe]) continue;
        YAML::Node get = c[probe]["httpGet"];
        ASSERT_TRUE(get) << where << ": " << probe << " is not an httpGet";
        EXPECT_TRUE(kProbePaths.count(Str(get["path"]))) << where << ": " << probe << " path " << Str(get["path"]);
        std::string port = Str(get["port"]);
        EXPECT_TRUE(port == std::to_string(kAgentPort) || (named.count(port) && named[port] == kAgentPort))
            << where << ": " << probe << " port " << port;
      }
    }
  }
  EXPECT_GE(agents, 2) << "a sidecar and a central agent";
}

TEST_F(PackagingKubernetesTest, AgentContainersRunAsNonRootOnReadOnlyRoot) {
  for (const auto& [m, pod] : PodSpecs()) {
    for (const YAML::Node& c : pod["containers"]) {
      if (!IsAgent(c)) continue;
      std::string where = m.file.string() + ": " + m.name() + "/" + Str(c["name"]);
      YAML::Node sc = c["securityContext"], psc = pod["securityContext"];
      auto get = [&](const char* key) { return sc[key] ? Str(sc[key]) : Str(psc[key]); };
      EXPECT_EQ(get("runAsNonRoot"), "true") << where;
      EXPECT_NE(get("runAsUser"), "0") << where;
      EXPECT_EQ(Str(sc["readOnlyRootFilesystem"]), "true") << where;
      EXPECT_EQ(Str(sc["allowPrivilegeEscalation"]), "false") << where;
      bool drops_all = false;
      for (const YAML::Node& cap : sc["capabilities"]["drop"]) drops_all |= Str(cap) == "ALL";
      EXPECT_TRUE(drops_all) << where << ": capabilities.drop [ALL]";
      // With a read-only root, the TLS key file needs a writable /tmp.
      bool tmp = false;
      for (const YAML::Node& vm : c["volumeMounts"]) tmp |= Str(vm["mountPath"]) == "/tmp";
      EXPECT_TRUE(tmp) << where << ": no volume at /tmp";
    }
  }
}

TEST_F(PackagingKubernetesTest, AgentConfigsPassCheck) {
  for (const auto& [m, pod] : PodSpecs()) {
    for (const YAML::Node& c : pod["containers"]) {
      if (!IsAgent(c)) continue;
      std::string where = m.file.string() + ": " + m.name() + "/" + Str(c["name"]);
      auto files = MountedFiles(m.file.parent_path(), pod, c);
      std::map<std::string, std::optional<std::string>> replace(files.begin(), files.end());
      std::string config_file = FlagValue(c["args"], "--config.file");
      std::string config;
      if (!config_file.empty()) {
        ASSERT_TRUE(files.count(config_file)) << where << ": " << config_file << " is not mounted";
        config = files[config_file];
      } else {
        // No config file: one target from the environment, as the agent builds it.
        std::string dsn, pass_file;
        for (const YAML::Node& e : c["env"]) {
          if (Str(e["name"]) == "DATA_SOURCE_NAME") dsn = Str(e["value"]);
          if (Str(e["name"]) == "DATA_SOURCE_PASS_FILE") pass_file = Str(e["value"]);
        }
        ASSERT_FALSE(dsn.empty()) << where << ": neither --config.file nor DATA_SOURCE_NAME";
        ASSERT_TRUE(pass_file.empty() || files.count(pass_file)) << where << ": " << pass_file << " is not mounted";
        config = "targets:\n  - name: default\n    dsn: '" + dsn + "'\n" +
                 (pass_file.empty() ? "" : "    password_file: " + pass_file + "\n");
      }
      CheckResult r = CheckConfig(config, replace);
      EXPECT_EQ(r.status, 0) << where << ":\n" << r.err;
    }
  }
}

TEST_F(PackagingKubernetesTest, MonitorsScrapeAgentPathsAndConfiguredTargets) {
  auto monitors = Of("PodMonitor");
  auto service_monitors = Of("ServiceMonitor");
  ASSERT_FALSE(monitors.empty()) << "a PodMonitor";
  ASSERT_FALSE(service_monitors.empty()) << "a ServiceMonitor";
  // PodMonitor: the port name is a port of an agent container in the same directory.
  for (const auto& pm : monitors) {
    for (const YAML::Node& ep : pm.doc["spec"]["podMetricsEndpoints"]) {
      EXPECT_TRUE(kScrapePaths.count(Str(ep["path"]))) << pm.file << ": path " << Str(ep["path"]);
      bool port_found = false;
      for (const auto& [m, pod] : PodSpecs())
        if (m.file.parent_path() == pm.file.parent_path())
          for (const YAML::Node& c : pod["containers"])
            for (const YAML::Node& p : c["ports"])
              port_found |= IsAgent(c) && Str(p["name"]) == Str(ep["port"]) &&
                            p["containerPort"].as<int>() == kAgentPort;
      EXPECT_TRUE(port_found) << pm.file << ": port " << Str(ep["port"]) << " is not the agent's 9679";
    }
  }
  // ServiceMonitor: the port is the Service's, which targets the agent; /probe names configured targets.
  for (const auto& sm : service_monitors) {
    const fs::path dir = sm.file.parent_path();
    std::set<std::string> service_ports;
    for (const auto& svc : Of("Service")) {
      if (svc.file.parent_path() != dir) continue;
      for (const YAML::Node& p : svc.doc["spec"]["ports"]) {
        std::string target = Str(p["targetPort"]);
        if (target == "metrics" || target == std::to_string(kAgentPort)) service_ports.insert(Str(p["name"]));
        EXPECT_EQ(p["port"].as<int>(), kAgentPort) << svc.file;
      }
    }
    std::set<std::string> configured, probed;
    for (const auto& cm : Of("ConfigMap")) {
      if (cm.file.parent_path() != dir || !cm.doc["data"]["pgpulse.yml"]) continue;
      for (const YAML::Node& t : YAML::Load(Str(cm.doc["data"]["pgpulse.yml"]))["targets"])
        configured.insert(Str(t["name"]));
    }
    bool own_metrics = false;
    for (const YAML::Node& ep : sm.doc["spec"]["endpoints"]) {
      std::string path = Str(ep["path"]);
      EXPECT_TRUE(kScrapePaths.count(path)) << sm.file << ": path " << path;
      EXPECT_TRUE(service_ports.count(Str(ep["port"]))) << sm.file << ": port " << Str(ep["port"]);
      if (path == "/metrics") own_metrics = true;
      if (path != "/probe") continue;
      ASSERT_EQ(ep["params"]["target"].size(), 1u) << sm.file << ": a /probe endpoint names one target";
      std::string target = Str(ep["params"]["target"][0]);
      EXPECT_TRUE(configured.count(target)) << sm.file << ": probes " << target << ", not in the ConfigMap";
      probed.insert(target);
    }
    EXPECT_TRUE(own_metrics) << sm.file << ": the agent's own /metrics";
    EXPECT_EQ(probed, configured) << sm.file << ": every configured target is probed";
  }
}

}  // namespace
}  // namespace pgpulse::testing
