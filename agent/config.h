#pragma once
// The agent's configuration file (YAML) and how flags and the environment fill it in.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/exporter_queries.h"
#include "agent/probe_policy.h"
#include "agent/metrics_profile.h"
#include "agent/sources/dumps_config.h"
#include "agent/sources/logs_config.h"
#include "collectors/duration.h"

namespace pgpulse::agent {

using collectors::Millis;

// Which databases of a server the database-scoped collectors run in.
struct DatabaseDiscovery {
  bool enabled = false;              // false: only the DSN's database
  std::vector<std::string> include;  // regexes, whole-name match; empty = all
  std::vector<std::string> exclude;  // regexes, whole-name match
  Millis refresh{300'000};
  size_t max_connections = 4;  // per target, the DSN's own connection included
  bool operator==(const DatabaseDiscovery& o) const {
    return enabled == o.enabled && include == o.include && exclude == o.exclude && refresh == o.refresh &&
           max_connections == o.max_connections;
  }
};

// pgBackRest repository of a target (`targets[].pgbackrest`): the agent runs
// `COMMAND [--config=CONFIG] --stanza=STANZA --output=json ARGS... info`
// (an argv, never a shell) at most once per `ttl`.
struct BackrestConfig {
  std::string command;  // absolute path; "" = no pgBackRest collector
  std::string stanza;
  std::string config;             // optional --config=
  std::vector<std::string> args;  // more options, each "--name" or "--name=value", e.g. --repo=1
  Millis timeout{30'000};
  Millis ttl{300'000};
  bool enabled() const { return !command.empty(); }
  bool operator==(const BackrestConfig& o) const {
    return command == o.command && stanza == o.stanza && config == o.config && args == o.args && timeout == o.timeout &&
           ttl == o.ttl;
  }
};

// Whether the server's data directory, WAL and tablespaces can be looked at
// on this machine (for the disk collector's statvfs).
struct FilesystemVisibility {
  enum class Mode { Auto, Yes, No };
  // Auto: only when the DSN's host is a Unix socket or loopback address and
  // the data directory's postmaster.pid does not name another server.
  Mode mode = Mode::Auto;
  std::string path_prefix;  // where the server's filesystem is mounted here, e.g. /host; "" = same paths
  bool operator==(const FilesystemVisibility& o) const { return mode == o.mode && path_prefix == o.path_prefix; }
};

struct TargetConfig {
  std::string name;
  std::string dsn;            // URI or key=value; "" = libpq defaults
  std::string password_file;  // optional; its first line is the password, read for every new connection
  // Optional argv (never a shell; argv[0] an absolute path) whose first line of stdout is the
  // password, run for every new connection (credentials.h); exclusive with password_file.
  std::vector<std::string> password_command;
  Millis password_command_timeout{10'000};
  // Constant labels on every sample of this target (e.g. cluster, env).
  std::vector<std::pair<std::string, std::string>> labels;
  DatabaseDiscovery databases;
  // "postgres", "pgbouncer" (an admin console), or "" = pgbouncer when the
  // DSN's dbname is pgbouncer, else postgres.
  std::string type;
  BackrestConfig pgbackrest;
  FilesystemVisibility filesystem;
  std::vector<BackupFileSet> backup_files;  // directories of pg_dump files (agent/sources/dumps.h)
  // Collectors' SQL as named prepared statements, planned once per connection. false for a
  // transaction-pooling proxy (PgBouncer pool_mode=transaction, RDS Proxy), where the next
  // transaction may reach a server connection that never saw the statement.
  bool prepared_statements = true;
  sources::LogsConfig logs;  // errors by kind from the server's csvlog/jsonlog (agent/sources/logs.h)
  // Covers every field: a reload keeps a running Target only when its section is equal (BuildRuntime).
  bool operator==(const TargetConfig& o) const {
    return name == o.name && dsn == o.dsn && password_file == o.password_file && labels == o.labels &&
           databases == o.databases && type == o.type && pgbackrest == o.pgbackrest && filesystem == o.filesystem &&
           backup_files == o.backup_files && prepared_statements == o.prepared_statements &&
           password_command == o.password_command && password_command_timeout == o.password_command_timeout &&
           logs == o.logs;
  }
};

// The target made from DATA_SOURCE_NAME and DATA_SOURCE_PASS_FILE when the config names none.
TargetConfig DefaultTarget(const std::string& data_source_name, const std::string& password_file);

// Per-collector settings the config may change without editing definitions.
struct CollectorOverride {
  std::optional<Millis> ttl;
  std::optional<Millis> timeout;
  std::optional<size_t> max_series;
  std::optional<size_t> max_rows;
  std::string where;  // file:line:col, for errors about an unknown collector
};

// Credentials for targets named in a /probe request rather than in the
// config (`/probe?target=host:port/db&auth_module=NAME`): the URL carries an
// address, never a secret. Whoever can reach /probe chooses the address, so a module
// reaches only `allowed_targets`, and only servers that prove who they are (sslmode
// verify-ca or verify-full) unless `allow_unverified_server` says otherwise.
struct AuthModule {
  std::string user;
  std::string password_file;
  std::vector<std::string> password_command;  // as in TargetConfig
  Millis password_command_timeout{10'000};
  std::vector<std::pair<std::string, std::string>> options;  // other libpq keywords, e.g. sslmode
  std::vector<AllowedTarget> allowed_targets;                // required, not empty
  bool allow_unverified_server = false;
  bool operator==(const AuthModule& o) const {
    return user == o.user && password_file == o.password_file && password_command == o.password_command &&
           password_command_timeout == o.password_command_timeout && options == o.options &&
           allowed_targets == o.allowed_targets && allow_unverified_server == o.allow_unverified_server;
  }
};

// postgres_exporter's collector switches, from its flags (agent/exporter_compat.h). They turn the
// postgres_exporter profile's definitions on and off: pe_<collector> and pe_<collector>__<part>
// belong to its collector <collector>, pe_exporter__<part> to its built-in metrics.
// --collector.stat_statements.*: what postgres_exporter's stat_statements collector reads
// (pe_stat_statements and pe_stat_statements__query fill them into their SQL).
struct StatStatementsOptions {
  bool given = false;          // any of the flags was given
  bool include_query = false;  // serve pg_stat_statements_query_id{queryid, query}
  size_t query_length = 120;   // characters of query text
  size_t limit = 100;          // statements kept
  std::vector<std::string> exclude_databases;
  std::vector<std::string> exclude_users;
};

struct ExporterSwitches {
  bool default_metrics = true;               // false: --disable-default-metrics
  bool settings_metrics = true;              // false: --disable-settings-metrics
  std::map<std::string, bool> collectors;    // --collector.NAME / --no-collector.NAME
  std::optional<TranslatedQueries> queries;  // --extend.query-path, translated (pe_queries__<namespace>)
  StatStatementsOptions stat_statements;
  bool any() const { return !default_metrics || !settings_metrics || !collectors.empty() || stat_statements.given; }
};

struct Config {
  std::string origin = "(defaults)";  // the file it came from
  std::vector<TargetConfig> targets;
  bool targets_from_environment = false;     // the file names none: the one target comes from DATA_SOURCE_*
  std::vector<std::string> definition_dirs;  // searched after the embedded set; later files override
  std::set<std::string> disabled_collectors;
  std::set<std::string> enabled_collectors;  // turns on definitions marked `enabled: false`
  std::map<std::string, CollectorOverride> overrides;
  Millis scrape_timeout{10'000};  // cap on a scrape's deadline
  Millis timeout_offset{500};     // subtracted from Prometheus's scrape timeout
  // false: /metrics serves only the agent's own metrics and targets are
  // scraped through /probe?target=NAME (one Prometheus target each).
  bool collect_on_metrics_path = true;
  std::map<std::string, AuthModule> auth_modules;
  size_t max_probe_targets = 64;  // ad-hoc targets kept (with their connections), least recently used dropped
  Millis connect_timeout{5'000};
  // metrics_profile: pgpulse's names, postgres_exporter's, or both (--metrics.profile overrides it).
  MetricsProfile metrics_profile = MetricsProfile::Pgpulse;
  ExporterSwitches exporter;  // from the command line only
};

struct ConfigResult {
  Config config;
  std::vector<std::string> errors;  // "file:line:col: what"; non-empty means unusable
  bool ok() const { return errors.empty(); }
};

// Loads `path` ("" = no file). When the file names no targets, one target
// "default" is made from `data_source_name` (DATA_SOURCE_NAME; "" = libpq
// defaults) and `password_file` (DATA_SOURCE_PASS_FILE).
ConfigResult LoadConfig(const std::string& path, const std::string& data_source_name, const std::string& password_file);

// The same for config text already read; `origin` names it in errors.
ConfigResult LoadConfigText(const std::string& text, const std::string& origin, const std::string& data_source_name,
                            const std::string& password_file);

}  // namespace pgpulse::agent
