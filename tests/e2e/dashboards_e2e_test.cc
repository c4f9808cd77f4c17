// Every panel of every dashboard has data: a primary under a little pgbench-like load with a streaming standby on a
// physical slot, one agent each, a real Prometheus scraping both every second, and every panel query evaluated
// through Prometheus's API with the dashboard's variables resolved the way Grafana resolves them.
//
// The primary archives into a real pgBackRest repository and has a full backup in it, which its agent reports.
//
// Panels that show a problem (blocked sessions, an unused index, a slot, idle in transaction) get that problem made
// on purpose: one session holds a row lock in an open transaction and another waits for it.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/polling.h"
#include "tests/harness/pg_dump.h"
#include "tests/harness/pgbackrest_repo.h"
#include "tests/harness/pgbouncer_server.h"
#include "tests/harness/postgres_server.h"
#include "tests/harness/temp_dir.h"
#include "tests/harness/prometheus_server.h"

namespace pgpulse::testing {
namespace {

using detail::Json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The pgbench of the server's major version (as pgserver.sh picks the server), else whatever PATH has.
std::string PgBench(const PostgresServer& pg) {
  const int major = std::stoi(pg.Query("SHOW server_version_num")) / 10000;
  const std::string path = "/usr/lib/postgresql/" + std::to_string(major) + "/bin/pgbench";
  return std::filesystem::exists(path) ? path : "pgbench";
}

// Background work on the primary until destroyed: a pgbench-like transaction every 50 ms on one connection, and a
// row lock held in an open transaction (idle in transaction) that a second session waits for.
class Workload {
 public:
  // Throws what libpqxx throws if the lock cannot be taken; the threads start only after that.
  explicit Workload(const std::string& dsn) {
    holder_connection_ = std::make_unique<pqxx::connection>(dsn);
    holder_ = std::make_unique<pqxx::work>(*holder_connection_);
    holder_->exec("UPDATE e2e_locked SET v = v + 1 WHERE id = 1");
    waiter_ = std::thread([dsn] {
      try {
        pqxx::connection c(dsn);
        pqxx::work w(c);
        w.exec("SET LOCAL lock_timeout = '120s'");
        w.exec("UPDATE e2e_locked SET v = v + 1 WHERE id = 1");
        w.commit();
      } catch (const std::exception&) {
        // The server went away first; nothing to clean up.
      }
    });
    load_ = std::thread([this, dsn] { RunLoad(dsn); });
  }

  ~Workload() {
    stop_ = true;
    holder_.reset();  // rolls back, so the waiter gets its lock and finishes
    holder_connection_.reset();
    waiter_.join();
    load_.join();
  }

 private:
  void RunLoad(const std::string& dsn) {
    try {
      pqxx::connection c(dsn);
      std::mt19937 rng(20261129);
      while (!stop_) {
        const std::string aid = std::to_string(rng() % 100000 + 1);
        const std::string tid = std::to_string(rng() % 10 + 1);
        const std::string delta = std::to_string(static_cast<int>(rng() % 10001) - 5000);
        pqxx::work w(c);
        w.exec("UPDATE pgbench_accounts SET abalance = abalance + " + delta + " WHERE aid = " + aid);
        w.exec("SELECT abalance FROM pgbench_accounts WHERE aid = " + aid);
        w.exec("UPDATE pgbench_tellers SET tbalance = tbalance + " + delta + " WHERE tid = " + tid);
        w.exec("UPDATE pgbench_branches SET bbalance = bbalance + " + delta + " WHERE bid = 1");
        w.exec("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (" + tid + ", 1, " + aid + ", " +
               delta + ", CURRENT_TIMESTAMP)");
        w.commit();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    } catch (const std::exception& e) {
      if (!stop_) std::cerr << "workload stopped: " << e.what() << std::endl;
    }
  }

  std::atomic<bool> stop_{false};
  std::thread load_;
  std::unique_ptr<pqxx::connection> holder_connection_;
  std::unique_ptr<pqxx::work> holder_;
  std::thread waiter_;
};

// A value as Grafana's Prometheus datasource puts it into a regex matcher: regex metacharacters escaped, with the
// backslash itself doubled because the regex sits inside a PromQL string.
std::string RegexEscape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out += "\\\\";
    out += c;
  }
  return out;
}

// Replaces $name and ${name} (${name:format} too) from values; unknown names are reported in unknown.
std::string Substitute(const std::string& text, const std::map<std::string, std::string>& values,
                       std::set<std::string>& unknown) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '$') {
      out += text[i++];
      continue;
    }
    size_t end = i + 1;
    std::string name;
    if (end < text.size() && text[end] == '{') {
      const size_t close = text.find('}', end);
      name = text.substr(end + 1, close - end - 1);
      name = name.substr(0, name.find(':'));
      end = close + 1;
    } else {
      while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
      name = text.substr(i + 1, end - i - 1);
    }
    auto it = values.find(name);
    if (it == values.end()) {
      unknown.insert(name);
      out += text.substr(i, end - i);
    } else {
      out += it->second;
    }
    i = end;
  }
  return out;
}

// The query of a query variable: a string (Grafana 9) or {"query": "..."} (10+).
std::string VariableQuery(const Json& variable) {
  const Json& q = variable["query"];
  return q.type() == Json::Type::kObject ? q["query"].str() : q.str();
}

struct Evaluation {
  int queries = 0;
  std::vector<std::string> problems;  // each names the dashboard, the panel or variable, and the query
  // What each stat or gauge tile shows: "file: title" -> its samples (one per instance and target).
  std::map<std::string, std::vector<PrometheusServer::Sample>> tiles;
  // What every panel's queries return now, tiles and graphs: "file: title" -> its samples.
  std::map<std::string, std::vector<PrometheusServer::Sample>> series;
  // How each multi-value variable was resolved: file -> name -> value.
  std::map<std::string, std::map<std::string, std::string>> variables;
};

// Resolves the dashboard's variables against Prometheus as Grafana would (every value of a multi-value variable,
// preferred[name] or else the first value of a single-value one), then runs every panel query.
void Evaluate(const PrometheusServer& prometheus, const std::string& file, const Json& dashboard,
              const std::map<std::string, std::string>& preferred, Evaluation& result) {
  // Grafana's interval variables. $__rate_interval is max(4 * scrape interval, $__interval + scrape interval): 4 s
  // for these 1 s scrapes, made 10 s so that rate() has a few samples even when a scrape is late.
  std::map<std::string, std::string> values = {
      {"__rate_interval", "10s"}, {"__interval", "2s"}, {"__range", "1m"}, {"__range_s", "60"}};
  for (const Json& v : dashboard["templating"]["list"].items()) {
    const std::string name = v["name"].str();
    const std::string type = v["type"].str();
    if (type == "datasource") continue;
    if (type == "custom") {
      values[name] = v["current"]["value"].str();
      continue;
    }
    if (type != "query") {
      result.problems.push_back(file + " variable " + name + ": type " + type + " is not handled by this test");
      continue;
    }
    std::set<std::string> unknown;
    const std::string query = Substitute(VariableQuery(v), values, unknown);
    for (const auto& u : unknown) result.problems.push_back(file + " variable " + name + ": unknown variable $" + u);
    const size_t open = query.find('('), comma = query.rfind(','), close = query.rfind(')');
    if (query.rfind("label_values(", 0) != 0 || comma == std::string::npos || close == std::string::npos) {
      result.problems.push_back(file + " variable " + name + ": not a label_values() query: " + query);
      continue;
    }
    std::string label = query.substr(comma + 1, close - comma - 1);
    label.erase(0, label.find_first_not_of(' '));
    const std::string selector = query.substr(open + 1, comma - open - 1);
    std::set<std::string> found;
    try {
      // Grafana lists the values seen over the dashboard's time range, so a server that just died stays selectable.
      for (const auto& sample : prometheus.Query("group by (" + label + ") (last_over_time(" + selector + "[1h]))")) {
        auto it = sample.labels.find(label);
        if (it != sample.labels.end() && !it->second.empty()) found.insert(it->second);
      }
    } catch (const std::exception& e) {
      result.problems.push_back(file + " variable " + name + ": " + e.what());
    }
    if (found.empty() && v["includeAll"].boolean() && !v["allValue"].str().empty()) {
      // What Grafana does with an include-all variable that has no values: All, its allValue (target's ".*" on
      // agents of one target, whose samples have no target label).
      values[name] = result.variables[file][name] = v["allValue"].str();
      continue;
    }
    if (found.empty()) {
      result.problems.push_back(file + " variable " + name + " has no values: " + query);
      values[name] = "no-value";
      continue;
    }
    if (v["multi"].boolean() || v["includeAll"].boolean()) {
      std::string joined;
      for (const auto& value : found) joined += (joined.empty() ? "" : "|") + RegexEscape(value);
      values[name] = result.variables[file][name] = found.size() == 1 ? joined : "(" + joined + ")";
    } else {
      auto want = preferred.find(name);
      if (want != preferred.end() && !found.count(want->second)) {
        result.problems.push_back(file + " variable " + name + " lacks the value " + want->second);
      }
      values[name] = RegexEscape(want != preferred.end() ? want->second : *found.begin());
    }
  }

  // Annotations (restarts, failovers) are empty on a healthy pair; they must still be valid PromQL.
  for (const Json& a : dashboard["annotations"]["list"].items()) {
    if (a["expr"].str().empty()) continue;
    std::set<std::string> unknown;
    const std::string expr = Substitute(a["expr"].str(), values, unknown);
    for (const auto& u : unknown) result.problems.push_back(file + " annotation " + a["name"].str() + ": $" + u);
    try {
      prometheus.Query(expr);
    } catch (const std::exception& e) {
      result.problems.push_back(file + " annotation " + a["name"].str() + ": " + e.what());
    }
  }
  std::vector<const Json*> panels;  // collapsed rows hold their panels
  for (const Json& panel : dashboard["panels"].items()) {
    panels.push_back(&panel);
    for (const Json& inner : panel["panels"].items()) panels.push_back(&inner);
  }
  for (const Json* p : panels) {
    const Json& panel = *p;
    for (const Json& t : panel["targets"].items()) {
      std::ostringstream where;
      where << file << " panel " << panel["id"].number() << " \"" << panel["title"].str() << "\" query "
            << t["refId"].str();
      std::set<std::string> unknown;
      const std::string expr = Substitute(t["expr"].str(), values, unknown);
      for (const auto& name : unknown) result.problems.push_back(where.str() + ": unknown variable $" + name);
      ++result.queries;
      try {
        const auto samples = prometheus.Query(expr);
        if (samples.empty()) result.problems.push_back(where.str() + ": no series from\n" + expr);
        auto& all = result.series[file + ": " + panel["title"].str()];
        all.insert(all.end(), samples.begin(), samples.end());
        if (panel["type"].str() == "stat" || panel["type"].str() == "gauge") {
          auto& tile = result.tiles[file + ": " + panel["title"].str()];
          tile.insert(tile.end(), samples.begin(), samples.end());
        }
      } catch (const std::exception& e) {
        result.problems.push_back(where.str() + ": " + e.what());
      }
    }
  }
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += "  " + l + "\n";
  return out;
}

// The overview's tiles as an on-call engineer reads them: each must show every server of the selection (a value,
// "unknown" (NaN) only where allowed), never drop one silently.
std::vector<std::string> TileProblems(const Evaluation& overview, const std::set<std::string>& instances,
                                      bool unknown_allowed_for_standby, const std::string& standby) {
  std::vector<std::string> problems;
  for (const auto& [tile, samples] : overview.tiles) {
    for (const std::string& instance : instances) {
      auto it = std::find_if(samples.begin(), samples.end(), [&](const PrometheusServer::Sample& s) {
        auto label = s.labels.find("instance");
        return label != s.labels.end() && label->second == instance;
      });
      if (it == samples.end()) {
        problems.push_back(tile + ": nothing for " + instance + " (Grafana would show that server as missing)");
      } else if (std::isnan(it->value) && !(unknown_allowed_for_standby && instance == standby)) {
        problems.push_back(tile + ": unknown (NaN) for " + instance + ", a healthy server");
      }
    }
  }
  return problems;
}

// The values a panel's queries return now for one instance (a graph's right edge).
std::vector<double> SeriesValues(const Evaluation& e, const std::string& panel, const std::string& instance) {
  std::vector<double> out;
  auto p = e.series.find(panel);
  if (p == e.series.end()) return out;
  for (const auto& s : p->second) {
    auto i = s.labels.find("instance");
    if (i != s.labels.end() && i->second == instance) out.push_back(s.value);
  }
  return out;
}

// The Locks graphs that have no series when the truth is 0.
const char* const kLocksZeroPanels[] = {"pgpulse-locks.json: Blocked sessions", "pgpulse-locks.json: Locks awaited",
                                        "pgpulse-locks.json: Sessions idle in transaction"};

// The value a tile shows for one instance; NaN if none.
double TileValue(const Evaluation& e, const std::string& tile, const std::string& instance) {
  auto t = e.tiles.find(tile);
  if (t == e.tiles.end()) return std::nan("");
  for (const auto& s : t->second) {
    auto label = s.labels.find("instance");
    if (label != s.labels.end() && label->second == instance) return s.value;
  }
  return std::nan("");
}

int FiringFor(const PrometheusServer& prometheus, const std::string& instance, std::string& names) {
  int n = 0;
  for (const auto& a : prometheus.Alerts()) {
    auto label = a.labels.find("instance");
    if (a.state == "firing" && label != a.labels.end() && label->second == instance) {
      ++n;
      names += " " + a.alertname;
    }
  }
  return n;
}

// With PGPULSE_RENDER_DASHBOARDS=DIR (dashboards/render.sh), draws dashboards as PNGs into DIR from the same
// queries against this Prometheus (dashboards/render.py, python3-matplotlib).
void Render(const PrometheusServer& prometheus, const std::vector<std::string>& files, const std::string& suffix,
            const std::string& queryid) {
  const char* out = std::getenv("PGPULSE_RENDER_DASHBOARDS");
  if (!out || !*out) return;
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   std::string(PGPULSE_SOURCE_DIR) + "/dashboards/render.py",
                                   "--prometheus",
                                   prometheus.url(""),
                                   "--out",
                                   out,
                                   "--minutes",
                                   "2",
                                   "--suffix=" + suffix,
                                   "--var",
                                   "queryid=" + queryid};
  for (const auto& f : files) argv.push_back(std::string(PGPULSE_SOURCE_DIR) + "/dashboards/" + f);
  const CommandResult r = RunCommand(argv, {}, 300);
  EXPECT_EQ(r.exit_status, 0) << r.output;
  std::cout << r.output;
}

TEST(DashboardsE2eTest, EveryPanelQueryOfEveryDashboardReturnsSeries) {
  const auto start = Clock::now();
  std::vector<std::pair<std::string, Json>> dashboards;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(PGPULSE_SOURCE_DIR) + "/dashboards")) {
    if (entry.path().extension() != ".json") continue;
    dashboards.emplace_back(entry.path().filename().string(), Json::Parse(ReadFile(entry.path().string())));
  }
  std::sort(dashboards.begin(), dashboards.end(), [](auto& a, auto& b) { return a.first < b.first; });
  ASSERT_GE(dashboards.size(), 7u);

  // The primary archives into a pgBackRest repository (the Backups dashboard's stanza, with a full backup), which
  // also gives the archiver panels a success to show; a slot WAL limit gives slots a safe size.
  ASSERT_TRUE(PgbackrestRepo::Installed()) << PgbackrestRepo::kCommand << " is not installed (tests/deps.sh)";
  std::vector<std::string> primary_conf = PgbackrestRepo::ServerConf();
  primary_conf.push_back("max_slot_wal_keep_size = '1GB'");
  primary_conf.push_back("wal_level = logical");  // the subscription below
  // The server-log panels: a csvlog the agent reads, with errors made while it scrapes (below).
  for (const char* line : {"logging_collector = on", "log_destination = 'csvlog'", "lc_messages = 'C'"})
    primary_conf.push_back(line);
  auto primary = PostgresServer::Start(primary_conf);
  const CommandResult init = RunCommand({PgBench(*primary), "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p",
                                         std::to_string(primary->port()), "-U", "postgres", "postgres"},
                                        {}, 120);
  ASSERT_EQ(init.exit_status, 0) << init.output;
  const auto backup_start = Clock::now();
  auto repo = PgbackrestRepo::Create(*primary);
  repo->Backup("full");
  const double backup_seconds = SecondsSince(backup_start);
  primary->Exec("CREATE TABLE e2e_locked (id int PRIMARY KEY, v int NOT NULL)");
  primary->Exec("INSERT INTO e2e_locked VALUES (1, 0)");
  primary->Exec("CREATE INDEX e2e_locked_v_never_used ON e2e_locked (v)");
  primary->Exec("SELECT pg_create_physical_replication_slot('e2e_standby', true)");
  primary->Exec("SELECT pg_switch_wal()");
  // A logical replication subscription in a database of its own (the publisher is this server's postgres), for
  // the subscription panels; the slot first, while no transaction runs (CREATE SUBSCRIPTION would wait for itself).
  primary->Exec("CREATE TABLE e2e_published (id int PRIMARY KEY); CREATE PUBLICATION e2e_pub FOR TABLE e2e_published");
  primary->Exec("SELECT pg_create_logical_replication_slot('e2e_sub', 'pgoutput')");
  primary->Exec("CREATE DATABASE e2e_subscriber");
  {
    pqxx::connection subscriber(primary->dsn() + " dbname=e2e_subscriber");
    pqxx::nontransaction(subscriber).exec("CREATE TABLE e2e_published (id int PRIMARY KEY)");
    pqxx::nontransaction(subscriber)
        .exec("CREATE SUBSCRIPTION e2e_sub CONNECTION 'host=127.0.0.1 port=" + std::to_string(primary->port()) +
              " user=postgres dbname=postgres' PUBLICATION e2e_pub WITH (create_slot = false, copy_data = false)");
  }
  auto standby =
      PostgresServer::StartStandbyOf(*primary, {"cluster_name = 'e2e_standby'", "primary_slot_name = 'e2e_standby'"});
  Workload workload(primary->dsn());
  // Some calls before the first statements_query run: polled until the workload's UPDATE is counted.
  const std::string workload_update =
      "SELECT queryid FROM pg_stat_statements WHERE query LIKE 'UPDATE pgbench_accounts SET abalance%' "
      "ORDER BY calls DESC LIMIT 1";
  std::string queryid;
  PollUntil([&] { return !(queryid = primary->Query(workload_update)).empty(); }, 10, 0.05);
  ASSERT_FALSE(queryid.empty()) << "the workload's UPDATE is not in pg_stat_statements";
  // The Backups dashboard's dump row: two nights of real pg_dump output of the primary in a directory of its own.
  TempDir dumps("dashboards-e2e-dumps");
  PgDump(*primary, dumps / "backup_20261203_0300.dump", {"--format=custom"});
  PgDump(*primary, dumps / "backup_20261204_0300.dump", {"--format=custom"});
  const double setup_seconds = SecondsSince(start);

  // The Queries dashboard's statement text needs statements_query, which is off by default; the primary's agent also
  // reports the stanza (ttl 0s: every scrape runs pgbackrest info, as a short ttl would in production) and looks in
  // every database, the subscriber's included (subscription_tables is database-scoped). The panels' rates span
  // 10 s here (minutes in production), so the counters they read are collected every scrape (ttl 0s).
  const std::string collectors =
      "collectors:\n  enable: [statements_query]\n  overrides:\n"
      "    statements: {ttl: 0s}\n    table_stats: {ttl: 0s}\n    index_stats: {ttl: 0s}\n";
  const std::string config = WriteTempFile("dashboards_e2e_pgpulse.yml", collectors);
  const std::string primary_config = WriteTempFile(
      "dashboards_e2e_primary.yml", collectors +
                                        "targets:\n  - name: primary\n"
                                        "    dsn: \"" +
                                        primary->uri() + "\"\n" + "    databases: {discover: true}\n    pgbackrest:\n" +
                                        repo->PgpulseConfig("      ") + "      ttl: 0s\n      timeout: 10s\n" +
                                        "    backup_files: [{name: nightly, path: " + dumps.path() +
                                        ", pattern: '*.dump'}]\n");
  auto primary_agent = AgentProcess::Start({"--config.file=" + primary_config});
  auto standby_agent = AgentProcess::Start({"--config.file=" + config}, {{"DATA_SOURCE_NAME", standby->uri()}});
  // The PgBouncer dashboard's target: a PgBouncer in front of the primary, its console scraped by an agent of its own.
  auto bouncer = PgBouncerServer::Start(*primary, {});
  auto bouncer_agent = AgentProcess::Start({}, {{"DATA_SOURCE_NAME", bouncer->admin_dsn()}});
  // The shipped rules, with PostgreSQLDown firing at once and PostgreSQLRestarted silent for these fresh servers,
  // so that the firing-alerts tile has 0 to show on the healthy pair and something during the incident.
  const std::string site =
      WriteTempFile("dashboards_e2e_thresholds.yaml", "postgres_down_for: 0s\nrestarted_within_seconds: 1\n");
  const std::string rules_dir = std::filesystem::path(site).parent_path().string() + "/dashboards_e2e_rules";
  const CommandResult generated = RunCommand(
      {"bash", std::string(PGPULSE_SOURCE_DIR) + "/alerts/generate.sh", "--thresholds", site, "--out", rules_dir});
  ASSERT_EQ(generated.exit_status, 0) << generated.output;
  PrometheusServer::Options options;
  options.rule_files.push_back(rules_dir + "/pgpulse-rules.yml");
  options.targets.push_back({"pgpulse-primary", "127.0.0.1:" + std::to_string(primary_agent->port())});
  options.targets.push_back({"pgpulse-standby", "127.0.0.1:" + std::to_string(standby_agent->port())});
  options.targets.push_back({"pgpulse-pgbouncer", "127.0.0.1:" + std::to_string(bouncer_agent->port())});
  auto prometheus = PrometheusServer::Start(options);
  ASSERT_TRUE(prometheus->WaitForTargetsUp(15));
  const auto scraping = Clock::now();

  // Rates need two samples in their window and the standby needs to stream: poll until every query has data.
  Evaluation last;
  int rounds = 0;
  PollUntil(
      [&] {
        last = Evaluation{};
        ++rounds;
        try {
          primary->Exec("SELECT 1 / 0");  // an ERROR (class 22) in the log for the errors-by-class panel
        } catch (const std::exception&) {
        }
        for (const auto& [file, json] : dashboards) Evaluate(*prometheus, file, json, {{"queryid", queryid}}, last);
        return last.problems.empty();
      },
      45, 1);
  std::string report;
  for (const auto& p : last.problems) report += "  " + p + "\n";
  EXPECT_TRUE(last.problems.empty()) << last.problems.size() << " of " << last.queries
                                     << " queries or variables without data after " << SecondsSince(scraping)
                                     << " s of scraping:\n"
                                     << report;
  // These agents have one target each, so pg_* samples carry no target label: every PostgreSQL and PgBouncer
  // dashboard's target variable has no values, falls back to All (.*), and its panels still have data (above).
  for (const auto& [file, json] : dashboards) {
    if (file == "pgpulse-agent.json") continue;  // the agent's own per-target metrics always have the label
    EXPECT_EQ(last.variables[file]["target"], ".*") << file << ": target should fall back to All";
  }
  const std::string primary_instance = "127.0.0.1:" + std::to_string(primary_agent->port());
  const std::string standby_instance = "127.0.0.1:" + std::to_string(standby_agent->port());
  const std::set<std::string> instances = {primary_instance, standby_instance};
  const Json* overview = nullptr;
  for (const auto& [file, json] : dashboards) {
    if (file == "pgpulse-overview.json") overview = &json;
  }
  ASSERT_NE(overview, nullptr);
  const std::string firing_tile = "pgpulse-overview.json: Firing alerts";
  const std::string up_tile = "pgpulse-overview.json: Up";
  // Evaluates the overview until done(e) or timeout; returns the last evaluation.
  const auto overview_until = [&](const std::function<bool(const Evaluation&)>& done, double timeout) {
    const auto since = Clock::now();
    Evaluation e;
    do {
      e = Evaluation{};
      Evaluate(*prometheus, "pgpulse-overview.json", *overview, {}, e);
      if (done(e)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    } while (SecondsSince(since) < timeout);
    return e;
  };
  const auto firing_matches = [&](const Evaluation& e, const std::string& instance, int at_least) {
    std::string names;
    const int firing = FiringFor(*prometheus, instance, names);
    return firing >= at_least && TileValue(e, firing_tile, instance) == firing;
  };

  // Healthy: every tile shows both servers, nothing unknown, and no alert fires (the tile says 0).
  Evaluation healthy = overview_until(
      [&](const Evaluation& e) {
        return TileProblems(e, instances, false, "").empty() && TileValue(e, firing_tile, primary_instance) == 0 &&
               TileValue(e, firing_tile, standby_instance) == 0;
      },
      20);
  std::string names;
  EXPECT_TRUE(TileProblems(healthy, instances, false, "").empty()) << Join(TileProblems(healthy, instances, false, ""));
  FiringFor(*prometheus, primary_instance, names);
  FiringFor(*prometheus, standby_instance, names);
  EXPECT_EQ(TileValue(healthy, firing_tile, primary_instance), 0) << "firing:" << names;
  EXPECT_EQ(TileValue(healthy, firing_tile, standby_instance), 0) << "firing:" << names;
  // What the healthy pair's tiles say, read as their value mappings do.
  EXPECT_EQ(TileValue(healthy, up_tile, primary_instance), 1);
  EXPECT_EQ(TileValue(healthy, up_tile, standby_instance), 1);
  EXPECT_EQ(TileValue(healthy, "pgpulse-overview.json: Role", primary_instance), 0);
  EXPECT_EQ(TileValue(healthy, "pgpulse-overview.json: Role", standby_instance), 1);
  EXPECT_EQ(TileValue(healthy, "pgpulse-overview.json: WAL receiver", primary_instance), 2) << "primary";
  EXPECT_EQ(TileValue(healthy, "pgpulse-overview.json: WAL receiver", standby_instance), 1) << "streaming";
  EXPECT_EQ(TileValue(healthy, "pgpulse-overview.json: Archiving", primary_instance), 0) << "ok";
  const auto failing_collectors = [&] {
    std::string out;
    for (const auto& s : prometheus->Query("pgpulse_collector_success == 0")) {
      out += " " + s.labels.at("instance") + "/" + s.labels.at("collector");
    }
    return out;
  };
  EXPECT_EQ(TileValue(healthy, "pgpulse-overview.json: Failing collectors", primary_instance), 0)
      << "failing:" << failing_collectors();
  const std::string standbys_tile = "pgpulse-overview.json: Standbys not streaming";
  EXPECT_EQ(TileValue(healthy, standbys_tile, primary_instance), 0) << "its one standby streams";
  EXPECT_EQ(TileValue(healthy, standbys_tile, standby_instance), 0) << "a standby expects no standbys";
  EXPECT_GE(healthy.tiles.size(), 15u);
  // The fleet view: the overview's health tiles on one line per server (its row repeats per instance, so each
  // line's queries are these with one instance); every tile shows both healthy servers, as the overview does.
  const Json* fleet = nullptr;
  for (const auto& [file, json] : dashboards) {
    if (file == "pgpulse-fleet.json") fleet = &json;
  }
  ASSERT_NE(fleet, nullptr);
  const auto evaluate_fleet = [&] {
    Evaluation e;
    Evaluate(*prometheus, "pgpulse-fleet.json", *fleet, {}, e);
    return e;
  };
  const Evaluation fleet_healthy = evaluate_fleet();
  EXPECT_TRUE(fleet_healthy.problems.empty()) << Join(fleet_healthy.problems);
  EXPECT_EQ(fleet_healthy.tiles.size(), 12u);
  EXPECT_TRUE(TileProblems(fleet_healthy, instances, false, "").empty())
      << Join(TileProblems(fleet_healthy, instances, false, ""));
  for (const std::string& instance : instances) {
    EXPECT_EQ(TileValue(fleet_healthy, "pgpulse-fleet.json: Up", instance), 1) << instance;
    EXPECT_EQ(TileValue(fleet_healthy, "pgpulse-fleet.json: Firing alerts", instance), 0) << instance;
    EXPECT_EQ(TileValue(fleet_healthy, "pgpulse-fleet.json: Failing collectors", instance), 0)
        << instance << " failing:" << failing_collectors();
  }
  EXPECT_EQ(TileValue(fleet_healthy, "pgpulse-fleet.json: WAL receiver", primary_instance), 2) << "primary";
  EXPECT_EQ(TileValue(fleet_healthy, "pgpulse-fleet.json: WAL receiver", standby_instance), 1) << "streaming";
  // The Locks graphs: the primary has its waiting session, the standby nothing, drawn as 0 rather than no line.
  for (const char* panel : kLocksZeroPanels) {
    const auto values = SeriesValues(last, panel, standby_instance);  // one per database, or one per server
    EXPECT_FALSE(values.empty()) << panel << ": no line for the healthy standby";
    EXPECT_TRUE(std::all_of(values.begin(), values.end(), [](double v) { return v == 0; })) << panel;
    const auto on_primary = SeriesValues(last, panel, primary_instance);
    EXPECT_FALSE(on_primary.empty()) << panel << " on the primary";
    if (std::string(panel) != "pgpulse-locks.json: Locks awaited") continue;
    EXPECT_GT(*std::max_element(on_primary.begin(), on_primary.end()), 0) << "the workload's waiting session";
  }

  if (std::getenv("PGPULSE_RENDER_DASHBOARDS")) {
    std::this_thread::sleep_for(std::chrono::seconds(90));  // pictures with a couple of minutes of lines
    std::vector<std::string> files;
    for (const auto& [file, json] : dashboards) files.push_back(file);
    Render(*prometheus, files, "", queryid);
  }

  // Incident 1: the standby's server stops, its agent stays. Up turns 0 (down), the firing-alerts tile counts
  // PostgreSQLDown (and whatever else fires for it), and no tile loses the standby.
  const auto down_since = Clock::now();
  standby->Stop();
  Evaluation server_down = overview_until(
      [&](const Evaluation& e) {
        return TileValue(e, up_tile, standby_instance) == 0 && firing_matches(e, standby_instance, 1) &&
               TileProblems(e, instances, true, standby_instance).empty() &&
               TileValue(e, standbys_tile, primary_instance) == 1;
      },
      30);
  names.clear();
  const int firing = FiringFor(*prometheus, standby_instance, names);
  EXPECT_EQ(TileValue(server_down, up_tile, standby_instance), 0);
  EXPECT_GE(firing, 1) << "PostgreSQLDown (for: 0s) should fire for the stopped standby";
  EXPECT_EQ(TileValue(server_down, firing_tile, standby_instance), firing) << "firing:" << names;
  EXPECT_NE(names.find("PostgreSQLDown"), std::string::npos) << names;
  EXPECT_TRUE(TileProblems(server_down, instances, true, standby_instance).empty())
      << Join(TileProblems(server_down, instances, true, standby_instance));
  // The primary still has the standby's slot, so the standby that left pg_stat_replication counts as missing.
  EXPECT_EQ(TileValue(server_down, standbys_tile, primary_instance), 1);
  const double server_down_seconds = SecondsSince(down_since);
  // The fleet view's line for the standby says the same: down, alerts firing, no tile lost.
  const Evaluation fleet_down = evaluate_fleet();
  EXPECT_EQ(TileValue(fleet_down, "pgpulse-fleet.json: Up", standby_instance), 0);
  EXPECT_GE(TileValue(fleet_down, "pgpulse-fleet.json: Firing alerts", standby_instance), 1);
  EXPECT_EQ(TileValue(fleet_down, "pgpulse-fleet.json: Up", primary_instance), 1);
  EXPECT_TRUE(TileProblems(fleet_down, instances, true, standby_instance).empty())
      << Join(TileProblems(fleet_down, instances, true, standby_instance));
  // The Locks graphs draw no 0 for the server that is down.
  {
    Evaluation locks;
    for (const auto& [file, json] : dashboards) {
      if (file == "pgpulse-locks.json") Evaluate(*prometheus, file, json, {}, locks);
    }
    for (const char* panel : kLocksZeroPanels) {
      EXPECT_TRUE(SeriesValues(locks, panel, standby_instance).empty()) << panel << ": a value for a server down";
      EXPECT_FALSE(SeriesValues(locks, panel, primary_instance).empty()) << panel << ": the primary is up";
    }
  }
  Render(*prometheus, {"pgpulse-overview.json"}, "-standby-down", queryid);

  // Incident 2: the standby's agent dies too: its series go stale, Prometheus's own `up` keeps the server on
  // every tile (Up says down, the rest unknown) instead of letting it vanish.
  standby_agent->Stop();
  Evaluation agent_down = overview_until(
      [&](const Evaluation& e) {
        // Only once Prometheus has marked the dead agent's series stale (its next scrape failed).
        return prometheus->Query("pg_up{instance=\"" + standby_instance + "\"}").empty() &&
               TileValue(e, up_tile, standby_instance) == 0 &&
               TileProblems(e, instances, true, standby_instance).empty() &&
               std::isnan(TileValue(e, "pgpulse-overview.json: Role", standby_instance));
      },
      30);
  EXPECT_TRUE(prometheus->Query("pg_up{instance=\"" + standby_instance + "\"}").empty()) << "pg_up never went stale";
  EXPECT_EQ(TileValue(agent_down, up_tile, standby_instance), 0);
  EXPECT_TRUE(std::isnan(TileValue(agent_down, "pgpulse-overview.json: Role", standby_instance)))
      << "the dead agent's last role is shown as if current";
  EXPECT_TRUE(TileProblems(agent_down, instances, true, standby_instance).empty())
      << Join(TileProblems(agent_down, instances, true, standby_instance));
  EXPECT_EQ(TileValue(agent_down, up_tile, primary_instance), 1);

  if (!::testing::Test::HasFailure()) {
    std::cout << "dashboards_e2e: " << healthy.tiles.size() << " overview tiles show both servers healthy, "
              << "while the standby's server is down (" << firing << " firing, seen after " << server_down_seconds
              << " s) and while its agent is gone" << std::endl;
    std::cout << "dashboards_e2e: " << last.queries << " panel queries in " << dashboards.size()
              << " dashboards; setup " << setup_seconds << " s (stanza and full backup " << backup_seconds
              << " s); every query had data in round " << rounds << ", " << SecondsSince(scraping)
              << " s after the targets were up; total " << SecondsSince(start) << " s" << std::endl;
  }
}

}  // namespace
}  // namespace pgpulse::testing
