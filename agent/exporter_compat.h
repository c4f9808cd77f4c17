#pragma once
// postgres_exporter's environment and command line, so that a deployment written for it (a
// systemd unit, a Helm chart's env block, a Debian /etc/default file) runs pgpulse unchanged:
//  - the DATA_SOURCE_* variables that name the server (ReadDataSources);
//  - its flags that pgpulse has no name of its own for, and the PG_EXPORTER_* variable of each
//    (DefineExporterFlags), which land on pgpulse's configuration (ApplyExporterFlags).
// Whatever has no equivalent here is an error that names the flag or variable, never ignored.

#include <CLI/CLI.hpp>

#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "agent/config.h"
#include "collectors/definition.h"

namespace pgpulse::agent {

using Environment = std::map<std::string, std::string>;
// This process's environment.
Environment ProcessEnvironment();

// The server(s) the environment names, used when the config file names no targets.
struct DataSources {
  // DATA_SOURCE_NAME split at ',' (as postgres_exporter does), or one URI built from
  // DATA_SOURCE_URI and DATA_SOURCE_USER; empty: one target on libpq's defaults (PGHOST, ...).
  std::vector<std::string> dsns;
  // DATA_SOURCE_PASS_FILE, read for every new connection (postgres_exporter reads it once).
  std::string password_file;
  // DATA_SOURCE_PASS, when no file is named.
  std::string password;
};

// As postgres_exporter: DATA_SOURCE_NAME wins; else DATA_SOURCE_URI (or DATA_SOURCE_URI_FILE)
// with DATA_SOURCE_USER (or _USER_FILE) and DATA_SOURCE_PASS (or _PASS_FILE), files winning over
// values. A DATA_SOURCE_* or PG_EXPORTER_* variable that neither exporter reads is an error, as
// is a user or password with no URI to use it for. Errors name the variable; none repeats a secret.
DataSources ReadDataSources(const Environment& env, std::vector<std::string>& errors);

// One target per data source: "default" for one; for several, named after each one's host and
// port (the `target` label tells them apart on /metrics).
std::vector<TargetConfig> EnvironmentTargets(const DataSources& sources, std::vector<std::string>& errors);

// postgres_exporter's flags, as given on the command line or in its PG_EXPORTER_* variables.
struct ExporterFlags {
  bool disable_default_metrics = false;
  bool disable_settings_metrics = false;
  bool auto_discover_databases = false;
  std::string include_databases;  // comma-separated names
  std::string exclude_databases;  // comma-separated names
  std::string constant_labels;    // "name=value,name=value"
  std::string extend_query_path;  // its queries.yaml
  std::string metric_prefix = "pg";
  std::string collection_timeout;  // "" = pgpulse's scrape timeout
  bool systemd_socket = false;
  bool dump_maps = false;
  std::map<std::string, bool> collectors;  // --collector.NAME (true) / --no-collector.NAME (false), as given
  // --collector.stat_statements.*, as given (empty: not given)
  std::string statements_include_query, statements_query_length, statements_limit;
  std::string statements_exclude_databases, statements_exclude_users;
};

// postgres_exporter's collectors (as of 0.20) and whether each is on by default there.
const std::vector<std::pair<std::string, bool>>& ExporterCollectorNames();

// Adds postgres_exporter's flags to `app`, each also read from its PG_EXPORTER_* variable where
// postgres_exporter has one. After parsing, call CollectExporterFlags.
void DefineExporterFlags(CLI::App& app, ExporterFlags& flags);
// Reads what only the parsed `app` knows (which --collector.* flags were given); errors name them.
void CollectExporterFlags(const CLI::App& app, ExporterFlags& flags, std::vector<std::string>& errors);

// Lands `flags` on a loaded config. Database discovery and constant labels apply to targets made
// from the environment (a config file that names targets sets them per target instead, and
// giving both is an error). Collector switches are checked against the profile's definitions in
// ResolveDefinitions (config.h's ExporterSwitches).
void ApplyExporterFlags(const ExporterFlags& flags, Config& cfg, std::vector<std::string>& errors);

// Fills --collector.stat_statements.* into the definitions of postgres_exporter's stat_statements
// collector (pe_stat_statements and pe_stat_statements__query; others are left alone): the limit
// as max_rows, the excluded names and the query length where their SQL marks them. A marker the
// SQL lacks is an error naming the definition.
void ApplyStatStatementsOptions(const StatStatementsOptions& options, collectors::Definition& def,
                                std::vector<std::string>& errors);

// --dumpmaps: the postgres_exporter profile's definitions, each with every column's usage and
// metric, as postgres_exporter prints its metric maps. Returns the exit status.
int PrintExporterMaps(std::ostream& out, std::ostream& err);

}  // namespace pgpulse::agent
