// postgres_exporter's environment and flags: which server they name, what they switch, and the
// error for each one pgpulse cannot honour.
#include "agent/exporter_compat.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "agent/runtime.h"
#include "tests/unit/helpers.h"

namespace pgpulse::agent {
namespace {

using pgpulse::testing::Joined;

using pgpulse::testing::WriteTempFile;

TEST(DataSources, NameWinsAndIsSplitAtCommas) {
  std::vector<std::string> errors;
  DataSources s = ReadDataSources({{"DATA_SOURCE_NAME", "postgresql://a:5432/x, host=b port=6000 dbname=y"},
                                   {"DATA_SOURCE_URI", "ignored:1/z"},
                                   {"DATA_SOURCE_PASS_FILE", "/run/secrets/pw"}},
                                  errors);
  EXPECT_TRUE(errors.empty()) << Joined(errors);
  EXPECT_EQ(s.dsns, (std::vector<std::string>{"postgresql://a:5432/x", "host=b port=6000 dbname=y"}));
  EXPECT_EQ(s.password_file, "/run/secrets/pw");
  std::vector<TargetConfig> targets = EnvironmentTargets(s, errors);
  ASSERT_EQ(targets.size(), 2u) << Joined(errors);
  EXPECT_EQ(targets[0].name, "a_5432");
  EXPECT_EQ(targets[1].name, "b_6000");
  EXPECT_EQ(targets[1].dsn, "host=b port=6000 dbname=y");
  EXPECT_EQ(targets[1].password_file, "/run/secrets/pw");

  DataSources one = ReadDataSources({{"DATA_SOURCE_NAME", "host=b"}}, errors);
  ASSERT_EQ(EnvironmentTargets(one, errors).at(0).name, "default");

  DataSources same = ReadDataSources({{"DATA_SOURCE_NAME", "host=b dbname=x,host=b dbname=y"}}, errors);
  targets = EnvironmentTargets(same, errors);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_NE(targets[0].name, targets[1].name) << "two databases of one server need two names";
}

TEST(DataSources, EmptyEntryIsAnError) {
  std::vector<std::string> errors;
  ReadDataSources({{"DATA_SOURCE_NAME", "host=a,,host=b"}}, errors);
  EXPECT_NE(Joined(errors).find("DATA_SOURCE_NAME: entry 2 of 3 (separated by ',') is empty"), std::string::npos)
      << Joined(errors);
  errors.clear();
  ReadDataSources({{"DATA_SOURCE_NAME", "host=a,"}}, errors);
  EXPECT_NE(Joined(errors).find("entry 2 of 2"), std::string::npos) << Joined(errors);
}

TEST(DataSources, UriWithUserAndPasswordIsEscaped) {
  std::vector<std::string> errors;
  DataSources s = ReadDataSources({{"DATA_SOURCE_URI", "db.example:5433/app?sslmode=disable"},
                                   {"DATA_SOURCE_USER", "mon@x"},
                                   {"DATA_SOURCE_PASS", "p:w/d"}},
                                  errors);
  EXPECT_TRUE(errors.empty()) << Joined(errors);
  ASSERT_EQ(s.dsns.size(), 1u);
  EXPECT_EQ(s.dsns[0], "postgresql://mon%40x:p%3Aw%2Fd@db.example:5433/app?sslmode=disable");
  EXPECT_TRUE(s.password_file.empty());
}

TEST(DataSources, FilesWinOverValuesAndThePasswordFileIsKeptAsAFile) {
  std::vector<std::string> errors;
  const std::string user = WriteTempFile("monitor\n"), uri = WriteTempFile("  127.0.0.1:5432/postgres \n");
  DataSources s = ReadDataSources({{"DATA_SOURCE_URI_FILE", uri},
                                   {"DATA_SOURCE_URI", "other:1/x"},
                                   {"DATA_SOURCE_USER_FILE", user},
                                   {"DATA_SOURCE_USER", "ignored"},
                                   {"DATA_SOURCE_PASS_FILE", "/run/pw"},
                                   {"DATA_SOURCE_PASS", "ignored"}},
                                  errors);
  EXPECT_TRUE(errors.empty()) << Joined(errors);
  ASSERT_EQ(s.dsns.size(), 1u);
  EXPECT_EQ(s.dsns[0], "postgresql://monitor@127.0.0.1:5432/postgres") << "no password in the DSN: it is re-read";
  EXPECT_EQ(s.password_file, "/run/pw");
  std::remove(user.c_str());
  std::remove(uri.c_str());
}

TEST(DataSources, WhatCannotBeUsedIsAnErrorNamingIt) {
  std::vector<std::string> errors;
  ReadDataSources({{"DATA_SOURCE_USER", "x"}}, errors);
  EXPECT_NE(Joined(errors).find("neither DATA_SOURCE_NAME nor DATA_SOURCE_URI"), std::string::npos) << Joined(errors);

  errors.clear();
  ReadDataSources({{"DATA_SOURCE_URI", "postgresql://u@h/db"}}, errors);
  EXPECT_NE(Joined(errors).find("DATA_SOURCE_URI: give host:port/dbname?options"), std::string::npos) << Joined(errors);

  errors.clear();
  ReadDataSources({{"PG_EXPORTER_DISABLE_DEFAULT_METRIC", "true"}, {"DATA_SOURCE_PASSWORD", "s3cret"}}, errors);
  const std::string all = Joined(errors);
  EXPECT_NE(all.find("environment variable PG_EXPORTER_DISABLE_DEFAULT_METRIC: not one"), std::string::npos) << all;
  EXPECT_NE(all.find("environment variable DATA_SOURCE_PASSWORD: not one"), std::string::npos) << all;
  EXPECT_EQ(all.find("s3cret"), std::string::npos) << "a value is never repeated";

  errors.clear();
  ReadDataSources({{"DATA_SOURCE_USER_FILE", "/nonexistent/user"}, {"DATA_SOURCE_URI", "h:1/d"}}, errors);
  EXPECT_NE(Joined(errors).find("DATA_SOURCE_USER_FILE: cannot read /nonexistent/user"), std::string::npos)
      << Joined(errors);
}

// Parses argv with DefineExporterFlags; `env` is set for the parse only.
struct Parsed {
  ExporterFlags flags;
  std::string error;
};
Parsed Parse(std::vector<std::string> args, const std::map<std::string, std::string>& env = {}) {
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  Parsed p;
  CLI::App app;
  DefineExporterFlags(app, p.flags);
  std::vector<const char*> argv{"pgpulse"};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    p.error = e.what();
  }
  for (const auto& [k, v] : env) unsetenv(k.c_str());
  return p;
}

TEST(ExporterFlags, FlagsAndTheirVariables) {
  Parsed p = Parse({"--collector.postmaster", "--no-collector.locks", "--exclude-databases=a,b"},
                   {{"PG_EXPORTER_DISABLE_SETTINGS_METRICS", "true"},
                    {"PG_EXPORTER_CONSTANT_LABELS", "env=prod,team=db"},
                    {"PG_EXPORTER_AUTO_DISCOVER_DATABASES", "true"},
                    {"PG_EXPORTER_EXCLUDE_DATABASES", "from_env"}});
  ASSERT_EQ(p.error, "");
  EXPECT_TRUE(p.flags.disable_settings_metrics);
  EXPECT_FALSE(p.flags.disable_default_metrics);
  EXPECT_TRUE(p.flags.auto_discover_databases);
  EXPECT_EQ(p.flags.constant_labels, "env=prod,team=db");
  EXPECT_EQ(p.flags.exclude_databases, "a,b") << "the command line wins over the variable";
  EXPECT_EQ(p.flags.collectors, (std::map<std::string, bool>{{"postmaster", true}, {"locks", false}}));
}

TEST(ExporterFlags, BothSwitchesOfOneCollectorAreRefused) {
  Parsed p = Parse({"--collector.locks", "--no-collector.locks"});
  EXPECT_NE(p.error.find("--no-collector.locks"), std::string::npos) << p.error;
  EXPECT_NE(Parse({"--collector.no_such"}).error, "");
}

Config EnvironmentConfig() {
  Config cfg;
  cfg.targets.push_back(DefaultTarget("host=x", ""));
  cfg.targets_from_environment = true;
  return cfg;
}

TEST(ExporterFlags, DiscoveryAndLabelsLandOnTheEnvironmentsTargets) {
  Config cfg = EnvironmentConfig();
  ExporterFlags f;
  f.auto_discover_databases = true;
  f.include_databases = "app, app.v2";
  f.exclude_databases = "template1";
  f.constant_labels = "env=prod, team = db";
  f.collection_timeout = "1m";
  std::vector<std::string> errors;
  ApplyExporterFlags(f, cfg, errors);
  EXPECT_TRUE(errors.empty()) << Joined(errors);
  const TargetConfig& t = cfg.targets.at(0);
  EXPECT_TRUE(t.databases.enabled);
  EXPECT_EQ(t.databases.include, (std::vector<std::string>{"app", "app\\.v2"})) << "names, matched exactly";
  EXPECT_EQ(t.databases.exclude, (std::vector<std::string>{"template1"}));
  EXPECT_EQ(t.labels, (std::vector<std::pair<std::string, std::string>>{{"env", "prod"}, {"team", "db"}}));
  EXPECT_EQ(cfg.scrape_timeout, Millis(60'000));
}

TEST(ExporterFlags, WhatHasNoEquivalentIsAnErrorNamingTheFlag) {
  Config cfg = EnvironmentConfig();
  ExporterFlags f;
  f.metric_prefix = "postgres";
  f.systemd_socket = true;
  f.extend_query_path = "/etc/queries.yaml";
  f.constant_labels = "ok=1,broken,target=x";
  f.collection_timeout = "soon";
  f.statements_limit = "0";
  f.statements_query_length = "12x";
  f.statements_exclude_users = "ok,back\\slash";
  std::vector<std::string> errors;
  ApplyExporterFlags(f, cfg, errors);
  const std::string all = Joined(errors);
  for (const char* want :
       {"--metric-prefix (PG_EXPORTER_METRIC_PREFIX): only 'pg'", "--web.systemd-socket:",
        "/etc/queries.yaml: cannot read postgres_exporter queries file", "'broken' is not name=value",
        "label 'target' is set by the agent", "--collection-timeout (PG_EXPORTER_COLLECTION_TIMEOUT)",
        "--collector.stat_statements.limit: must be a whole number from 1 to 1000000, got '0'",
        "--collector.stat_statements.query_length: must be a whole number from 1 to 100000, got '12x'",
        "--collector.stat_statements.exclude_users: 'back\\slash' holds a backslash"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
}

TEST(ExporterFlags, ATargetListInTheFileTakesNoEnvironmentSettings) {
  ConfigResult loaded = LoadConfigText("targets:\n  - name: a\n    dsn: host=x\n", "pgpulse.yml", "", "");
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded.config.targets_from_environment);
  ExporterFlags f;
  f.auto_discover_databases = true;
  f.constant_labels = "env=prod";
  std::vector<std::string> errors;
  ApplyExporterFlags(f, loaded.config, errors);
  const std::string all = Joined(errors);
  EXPECT_NE(all.find("pgpulse.yml names targets: set databases.discover"), std::string::npos) << all;
  EXPECT_NE(all.find("pgpulse.yml names targets: set labels per target there, not with --constantLabels"),
            std::string::npos)
      << all;
}

// The definitions a runtime built with these options runs (or the errors).
std::set<std::string> Definitions(const AgentOptions& options, std::string& errors) {
  SelfMetrics metrics("test", "test");
  std::vector<std::string> e;
  auto rt = BuildRuntime(LoadAgentConfig(options), nullptr, metrics, e);
  errors = Joined(e);
  std::set<std::string> names;
  if (rt)
    for (const auto& d : *rt->definitions) names.insert(d.name);
  return names;
}

TEST(ExporterFlags, CollectorSwitchesTurnTheProfilesDefinitionsOnAndOff) {
  AgentOptions options;
  options.data_sources.dsns = {"host=127.0.0.1 port=1"};
  options.metrics_profile = MetricsProfile::PostgresExporter;
  std::string errors;
  std::set<std::string> defaults = Definitions(options, errors);
  ASSERT_EQ(errors, "");
  EXPECT_TRUE(defaults.count("pe_settings"));
  EXPECT_TRUE(defaults.count("pe_locks"));
  EXPECT_TRUE(defaults.count("pe_exporter__static"));
  EXPECT_FALSE(defaults.count("pe_postmaster")) << "off by default, as in postgres_exporter";

  options.exporter.collectors = {{"postmaster", true}, {"locks", false}, {"replication_slots", false}};
  options.exporter.disable_settings_metrics = true;
  options.exporter.disable_default_metrics = true;
  std::set<std::string> switched = Definitions(options, errors);
  ASSERT_EQ(errors, "");
  EXPECT_TRUE(switched.count("pe_postmaster"));
  EXPECT_FALSE(switched.count("pe_locks"));
  EXPECT_FALSE(switched.count("pe_settings"));
  EXPECT_FALSE(switched.count("pe_exporter__static"));
  EXPECT_FALSE(switched.count("pe_exporter__stat_database_conflicts"));
  for (const auto& d : switched) EXPECT_EQ(d.rfind("pe_replication_slots", 0), std::string::npos) << d;
  EXPECT_TRUE(switched.count("pe_stat_database")) << "untouched collectors stay";

  options.exporter.collectors = {{"stat_statements", true}};
  std::set<std::string> statements = Definitions(options, errors);
  ASSERT_EQ(errors, "");
  EXPECT_TRUE(statements.count("pe_stat_statements"));
  EXPECT_FALSE(statements.count("pe_stat_statements__query")) << "query texts only with include_query";
  options.exporter.statements_include_query = "true";
  EXPECT_TRUE(Definitions(options, errors).count("pe_stat_statements__query")) << errors;
  options.exporter.collectors = {};
  EXPECT_FALSE(Definitions(options, errors).count("pe_stat_statements__query")) << "include_query alone runs nothing";
  options.exporter.statements_include_query = "";

  options.metrics_profile = MetricsProfile::Pgpulse;
  options.exporter.collectors = {{"locks", false}};
  Definitions(options, errors);
  EXPECT_NE(errors.find("served with --metrics.profile=postgres_exporter or both"), std::string::npos) << errors;
}

// --collector.stat_statements.* land in the SQL of both stat_statements definitions, quotes doubled.
TEST(ExporterFlags, StatStatementsOptionsAreFilledIntoItsSql) {
  AgentOptions options;
  options.data_sources.dsns = {"host=127.0.0.1 port=1"};
  options.metrics_profile = MetricsProfile::PostgresExporter;
  options.exporter.collectors = {{"stat_statements", true}};
  options.exporter.statements_include_query = "true";
  options.exporter.statements_limit = "7";
  options.exporter.statements_query_length = "33";
  options.exporter.statements_exclude_databases = "template1, o'brien";
  options.exporter.statements_exclude_users = "monitor";
  SelfMetrics metrics("test", "test");
  std::vector<std::string> errors;
  auto rt = BuildRuntime(LoadAgentConfig(options), nullptr, metrics, errors);
  ASSERT_TRUE(rt) << Joined(errors);
  int seen = 0;
  for (const auto& d : *rt->definitions) {
    if (d.name.rfind("pe_stat_statements", 0) != 0) continue;
    ++seen;
    EXPECT_EQ(d.max_rows, 7u) << d.name;
    for (const auto& v : d.variants) {
      EXPECT_NE(v.sql.find("<> ALL (ARRAY['template1', 'o''brien']::text[])"), std::string::npos) << v.sql;
      EXPECT_NE(v.sql.find("<> ALL (ARRAY['monitor']::text[])"), std::string::npos) << v.sql;
      EXPECT_EQ(v.sql.find("/* exclude_"), std::string::npos) << v.sql;
      if (d.name == "pe_stat_statements__query") {
        EXPECT_NE(v.sql.find("left(s.query, 33)"), std::string::npos) << v.sql;
      }
    }
  }
  EXPECT_EQ(seen, 2);
}

}  // namespace
}  // namespace pgpulse::agent
