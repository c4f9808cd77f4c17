// postgres_exporter's environment and flags (issue #13 part 2): a deployment written for
// postgres_exporter, its DATA_SOURCE_* and PG_EXPORTER_* variables unchanged, runs pgpulse with
// --metrics.profile=postgres_exporter against a real server that asks for a SCRAM password; where
// Debian's postgres_exporter 0.11.1 is installed, it gets the same variables and both must agree.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <pqxx/pqxx>

#include "tests/harness/agent_process.h"
#include "tests/harness/exporter_differential.h"
#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"
#include "tests/harness/polling.h"
#include "tests/harness/postgres_exporter_process.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

using Env = std::map<std::string, std::string>;

const char* kPassword = "Monitor-Secret-5501";

class PostgresExporterEnvironment : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PostgresServer::Start();
    // Role monitor must give its password over TCP, as a production monitoring role would.
    std::ofstream(pg_->dir() + "/data/pg_hba.conf") << "local all all trust\n"
                                                       "host all monitor 127.0.0.1/32 scram-sha-256\n"
                                                       "host all all 127.0.0.1/32 trust\n";
    pg_->Exec(std::string("CREATE ROLE monitor LOGIN PASSWORD '") + kPassword + "'; GRANT pg_monitor TO monitor");
    pg_->Exec("SELECT pg_reload_conf()");
    pg_->Exec("CREATE DATABASE app");
    pg_->Exec("CREATE DATABASE scratch");
    for (const char* db : {"app", "scratch"}) {
      pqxx::connection c(pg_->dsn() + " dbname=" + db);
      pqxx::nontransaction(c).exec("CREATE TABLE t_" + std::string(db) + " (id int); INSERT INTO t_" + db +
                                   " VALUES (1); ANALYZE");
    }
  }

  // What a postgres_exporter deployment sets: the server without credentials, the user, a password file.
  Env Environment(const std::string& password = kPassword) const {
    return {{"DATA_SOURCE_URI", "127.0.0.1:" + std::to_string(pg_->port()) + "/postgres?sslmode=disable"},
            {"DATA_SOURCE_USER", "monitor"},
            {"DATA_SOURCE_PASS_FILE", WriteTempFile("monitor.pass", password + "\n")}};
  }

  std::unique_ptr<PostgresServer> pg_;
};

std::set<std::string> Values(const ParsedFamily& f, const std::string& label) {
  std::set<std::string> out;
  for (const auto& [labels, value] : f.samples)
    if (auto it = labels.find(label); it != labels.end()) out.insert(it->second);
  return out;
}

bool HasSettings(const std::map<std::string, ParsedFamily>& families) {
  for (const auto& [name, f] : families)
    if (name.rfind("pg_settings_", 0) == 0) return true;
  return false;
}

TEST_F(PostgresExporterEnvironment, TheSameVariablesReachTheSameServerWithTheSameSwitches) {
  Env env = Environment();
  env["PG_EXPORTER_DISABLE_SETTINGS_METRICS"] = "true";
  env["PG_EXPORTER_CONSTANT_LABELS"] = "env=test,team=db";
  env["PG_EXPORTER_WEB_TELEMETRY_PATH"] = "/pgmetrics";
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, env);
  const std::string text = ScrapeUntil(
      *agent, [](const std::string& b) { return b.find("pg_stat_database_xact_commit{") != std::string::npos; }, 10,
      "/pgmetrics");
  const auto ours = ParseFamilies(text);
  ASSERT_TRUE(ours.count("pg_up")) << text.substr(0, 1000);
  EXPECT_EQ(ours.at("pg_up").samples.at(0).second, 1) << "the URI, user and password file reach the server";
  EXPECT_FALSE(HasSettings(ours)) << "PG_EXPORTER_DISABLE_SETTINGS_METRICS=true";
  EXPECT_EQ(Values(ours.at("pg_stat_database_xact_commit"), "env"), (std::set<std::string>{"test"}));
  EXPECT_EQ(Values(ours.at("pg_static"), "team"), (std::set<std::string>{"db"}));
  EXPECT_EQ(HttpGet(agent->url("/metrics")).status, 404) << "the telemetry path moved";
  for (const std::string& shown : {agent->Log(), text, HttpGet(agent->url("/")).body})
    EXPECT_EQ(shown.find(kPassword), std::string::npos) << "the password is shown";

  if (!PostgresExporterProcess::Installed())
    GTEST_SKIP() << "postgres_exporter 0.11.1 not installed: comparison skipped";
  auto pe = PostgresExporterProcess::StartWith(env);
  const auto theirs = ParseFamilies(HttpGet(pe->url("/pgmetrics")).body);
  ASSERT_TRUE(theirs.count("pg_up"));
  EXPECT_EQ(theirs.at("pg_up").samples.at(0).second, 1) << "postgres_exporter reads the same variables";
  EXPECT_FALSE(HasSettings(theirs));
  // Every family postgres_exporter puts the constant labels on has them from pgpulse too.
  int labelled = 0;
  for (const auto& [name, family] : theirs) {
    // (A family pgpulse declares without samples, e.g. last_archive_age before any archiving, has none to label.)
    if (Values(family, "env").empty() || !ours.count(name) || ours.at(name).samples.empty()) continue;
    ++labelled;
    EXPECT_EQ(Values(ours.at(name), "env"), (std::set<std::string>{"test"})) << name;
  }
  EXPECT_GT(labelled, 3);
}

TEST_F(PostgresExporterEnvironment, AWrongPasswordIsDownNotHidden) {
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"}, Environment("not-the-password"));
  const std::string text = Scrape(*agent);
  EXPECT_EQ(SampleValue(text, "pg_up"), 0.0) << text.substr(0, 800);
  EXPECT_EQ(agent->Log().find("not-the-password"), std::string::npos);
  if (!PostgresExporterProcess::Installed()) return;
  auto pe = PostgresExporterProcess::StartWith(Environment("not-the-password"));
  EXPECT_EQ(SampleValue(HttpGet(pe->url("/metrics")).body, "pg_up"), 0.0);
}

TEST_F(PostgresExporterEnvironment, AutoDiscoveryHonoursIncludeAndExclude) {
  Env env = Environment();
  env["PG_EXPORTER_AUTO_DISCOVER_DATABASES"] = "true";
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter", "--exclude-databases=scratch"}, env);
  const std::string text = ScrapeUntil(*agent, [](const std::string& b) {
    return b.find("pg_stat_user_tables_n_live_tup{datname=\"app\"") != std::string::npos;
  });
  const auto families = ParseFamilies(text);
  std::set<std::string> databases = Values(families.at("pg_stat_user_tables_n_live_tup"), "datname");
  EXPECT_TRUE(databases.count("app")) << text.substr(0, 800);
  EXPECT_FALSE(databases.count("scratch")) << "--exclude-databases=scratch";

  auto only = AgentProcess::Start(
      {"--metrics.profile=postgres_exporter", "--auto-discover-databases", "--include-databases=scratch"},
      Environment());
  const std::string included = ScrapeUntil(*only, [](const std::string& b) {
    return b.find("pg_stat_user_tables_n_live_tup{datname=\"scratch\"") != std::string::npos;
  });
  EXPECT_EQ(included.find("datname=\"app\",schemaname"), std::string::npos) << "--include-databases=scratch";
}

TEST_F(PostgresExporterEnvironment, CollectorFlagsSwitchTheProfilesCollectors) {
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter", "--collector.postmaster",
                                    "--no-collector.locks", "--disable-default-metrics"},
                                   Environment());
  const std::string text = ScrapeUntil(
      *agent, [](const std::string& b) { return b.find("pg_postmaster_start_time_seconds") != std::string::npos; });
  const auto families = ParseFamilies(text);
  EXPECT_TRUE(families.count("pg_postmaster_start_time_seconds"));
  EXPECT_FALSE(families.count("pg_locks_count")) << "--no-collector.locks";
  EXPECT_FALSE(families.count("pg_static")) << "--disable-default-metrics";
  EXPECT_TRUE(families.count("pg_stat_database_xact_commit")) << "a collector the flags do not name stays";
  EXPECT_TRUE(families.count("pg_up"));
}

TEST(PostgresExporterDataSources, EachNameOfACommaListIsATarget) {
  auto a = PostgresServer::Start();
  auto b = PostgresServer::Start();
  auto agent = AgentProcess::Start({"--metrics.profile=postgres_exporter"},
                                   {{"DATA_SOURCE_NAME", a->uri() + "?sslmode=disable," + b->uri()}});
  const std::string text = Scrape(*agent);
  const auto families = ParseFamilies(text);
  ASSERT_TRUE(families.count("pg_up"));
  EXPECT_EQ(Values(families.at("pg_up"), "target"),
            (std::set<std::string>{"127.0.0.1_" + std::to_string(a->port()), "127.0.0.1_" + std::to_string(b->port())}))
      << text.substr(0, 800);
  for (const auto& [labels, value] : families.at("pg_up").samples) EXPECT_EQ(value, 1);
}

TEST(PostgresExporterFlags, WhatPgpulseCannotHonourStopsItWithTheName) {
  struct Case {
    std::vector<std::string> args;
    Env env;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{}, {{"PG_EXPORTER_CONSTANT_LABEL", "a=b"}}, "environment variable PG_EXPORTER_CONSTANT_LABEL: not one"},
      {{"--extend.query-path=/etc/queries.yaml"}, {}, "/etc/queries.yaml: cannot read postgres_exporter queries file"},
      {{}, {{"PG_EXPORTER_METRIC_PREFIX", "postgres"}}, "--metric-prefix (PG_EXPORTER_METRIC_PREFIX): only 'pg'"},
      {{"--collector.stat_statements.limit=many"}, {}, "--collector.stat_statements.limit: must be a whole number"},
      {{"--web.systemd-socket"}, {}, "--web.systemd-socket"},
      {{"--collector.locks", "--no-collector.locks"}, {}, "--no-collector.locks"},
      {{"--collector.no_such_thing"}, {}, "--collector.no_such_thing"},
      {{}, {{"DATA_SOURCE_USER", "monitor"}}, "neither DATA_SOURCE_NAME nor DATA_SOURCE_URI"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args{"check", "--metrics.profile=postgres_exporter"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CommandResult r = AgentProcess::Run(args, c.env);
    EXPECT_NE(r.exit_status, 0) << c.want;
    EXPECT_NE(r.output.find(c.want), std::string::npos) << "want: " << c.want << "\ngot: " << r.output;
  }
  CommandResult pgpulse_profile = AgentProcess::Run({"check", "--no-collector.locks"});
  EXPECT_NE(pgpulse_profile.output.find("served with --metrics.profile=postgres_exporter or both"), std::string::npos)
      << pgpulse_profile.output;
}

TEST(PostgresExporterFlags, DumpmapsPrintsTheProfilesMaps) {
  CommandResult r = AgentProcess::Run({"--dumpmaps"});
  EXPECT_EQ(r.exit_status, 0) << r.output;
  for (const char* want : {"pe_stat_database (collector stat_database, server)", "pg_stat_database_xact_commit",
                           "pe_postmaster (collector postmaster, off by default, server)"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output.substr(0, 2000);
}

}  // namespace
}  // namespace pgpulse::testing

namespace pgpulse::testing {
namespace {

constexpr const char* kExampleQueries = "/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml";

// The namespaces of Debian's example file, each a prefix of the families it makes.
const std::vector<std::string> kExampleNamespaces = {"pg_replication_",      "pg_postmaster_",
                                                     "pg_stat_user_tables_", "pg_statio_user_tables_",
                                                     "pg_stat_statements_",  "pg_process_idle_"};

bool FromExample(const std::string& family) {
  for (const auto& ns : kExampleNamespaces)
    if (family.rfind(ns, 0) == 0) return true;
  return false;
}

// Every sample's whole label set.
std::set<Labels> AllLabelSets(const ParsedFamily& f) { return LabelSets(f, LabelNames(f)); }

TEST(PostgresExporterQueries, DebiansExampleFileServesWhatPostgresExporterServes) {
  if (!PostgresExporterProcess::Installed() || !std::ifstream(kExampleQueries))
    GTEST_SKIP() << "Debian package prometheus-postgres-exporter (binary and example queries.yaml) not installed";
  auto pg = PostgresServer::Start();
  pg->Exec(
      "CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts SELECT g, 0 FROM "
      "generate_series(1, 500) g; ANALYZE accounts");
  pqxx::connection idle(pg->dsn() + " application_name=idler");  // a session for pg_process_idle to see
  const std::string dsn = "postgresql://postgres@127.0.0.1:" + std::to_string(pg->port()) + "/postgres?sslmode=disable";
  auto pe = PostgresExporterProcess::StartWith({{"DATA_SOURCE_NAME", dsn}},
                                               {std::string("--extend.query-path=") + kExampleQueries});
  auto agent = AgentProcess::Start(
      {"--metrics.profile=postgres_exporter", std::string("--extend.query-path=") + kExampleQueries},
      {{"DATA_SOURCE_NAME", dsn}});
  const std::string our_text = ScrapeUntil(
      *agent, [](const std::string& b) { return b.find("pg_process_idle_seconds_bucket") != std::string::npos; });
  const std::string their_text = HttpGet(pe->url("/metrics")).body;
  const auto ours = ParseFamilies(our_text);
  const auto theirs = ParseFamilies(their_text);

  int compared = 0;
  for (const auto& [name, family] : theirs) {
    if (!FromExample(name)) continue;
    SCOPED_TRACE(name);
    ++compared;
    auto found = ours.find(name);
    ASSERT_NE(found, ours.end()) << "pgpulse does not serve " << name;
    EXPECT_EQ(found->second.type, family.type);
    std::set<std::string> want = LabelNames(family), got = LabelNames(found->second);
    EXPECT_EQ(got, want);
    // Tables are the same on both sides; sessions (pg_process_idle) change between the two scrapes.
    if (name.rfind("pg_stat_user_tables_", 0) == 0 || name.rfind("pg_statio_user_tables_", 0) == 0) {
      EXPECT_EQ(AllLabelSets(found->second), AllLabelSets(family));
    }
  }
  EXPECT_GE(compared, 30) << their_text.substr(0, 2000);
  // Values: a timestamp as Unix seconds (postgres_exporter truncates to whole seconds), counts, NULL as NaN.
  auto value = [](const std::map<std::string, ParsedFamily>& f, const std::string& name) {
    return f.at(name).samples.at(0).second;
  };
  EXPECT_NEAR(value(ours, "pg_postmaster_start_time_seconds"), value(theirs, "pg_postmaster_start_time_seconds"), 1.0);
  EXPECT_EQ(value(ours, "pg_stat_user_tables_n_live_tup"), 500);
  EXPECT_EQ(value(theirs, "pg_stat_user_tables_n_live_tup"), 500);
  EXPECT_TRUE(std::isnan(value(theirs, "pg_statio_user_tables_tidx_blks_hit")));
  EXPECT_TRUE(std::isnan(value(ours, "pg_statio_user_tables_tidx_blks_hit")));
  EXPECT_EQ(ours.at("pg_process_idle_seconds").type, "histogram");

  // The example's pg_stat_statements query reads total_time, which PostgreSQL 13 renamed: it fails in
  // both, and both say so in pg_exporter_last_scrape_error rather than serving nothing quietly.
  EXPECT_FALSE(theirs.count("pg_stat_statements_calls"));
  EXPECT_FALSE(ours.count("pg_stat_statements_calls"));
  EXPECT_EQ(SampleValue(their_text, "pg_exporter_last_scrape_error"), 1.0);
  EXPECT_EQ(SampleValue(our_text, "pg_exporter_last_scrape_error"), 1.0);

  // Both load the same file: one load-error series, 0, with the same hash.
  ASSERT_TRUE(ours.count("pg_exporter_user_queries_load_error"));
  ASSERT_TRUE(theirs.count("pg_exporter_user_queries_load_error"));
  EXPECT_EQ(AllLabelSets(ours.at("pg_exporter_user_queries_load_error")),
            AllLabelSets(theirs.at("pg_exporter_user_queries_load_error")));
  EXPECT_EQ(ours.at("pg_exporter_user_queries_load_error").samples.at(0).second, 0);
}

TEST(PostgresExporterQueries, AnUntranslatableFileStopsTheAgentWithItsPosition) {
  const std::string file = WriteTempFile("queries.yaml",
                                         "pg_x:\n  query: SELECT 1 AS d\n  metrics:\n"
                                         "    - d: {usage: DURATION, description: x}\n");
  CommandResult r = AgentProcess::Run({"check", "--metrics.profile=postgres_exporter", "--extend.query-path=" + file});
  EXPECT_NE(r.exit_status, 0);
  EXPECT_NE(r.output.find(file + ":4:18: query 'pg_x' column 'd': usage DURATION"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace pgpulse::testing
