#pragma once
// The collector definition model and its strict YAML loader.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "collectors/duration.h"
#include "collectors/embedded.h"
#include "collectors/family.h"

namespace pgpulse::collectors {

enum class Scope { Server, Database };
enum class Role { Any, Primary, Replica };
// What a definition's SQL runs against: a PostgreSQL server, or a PgBouncer
// admin console (SHOW commands over the simple protocol, no transactions).
enum class TargetKind { Postgres, PgBouncer };
const char* TargetKindName(TargetKind kind);

// One SQL text valid for server_version_num in [min_version, max_version)
// (for a PgBouncer target: its version as major*10000 + minor*100 + patch).
struct Variant {
  int min_version = 0;
  int max_version = 1'000'000;
  std::string sql;
};

// RowsBeforeLimit: the query limits itself with `LIMIT $1` (the engine binds
// max_rows to $1) and reports in this column how many rows it had before the
// limit (e.g. `count(*) OVER ()`), so rows left out are still counted.
// AddTo: the column's value (times its scale) is added to another metric
// column's value in the same row, e.g. PgBouncer's maxwait (s) + maxwait_us (µs).
// Untyped: only in foreign_names sources (postgres_exporter serves some metrics untyped).
// NameSuffix (`name_suffix: PREFIX`, foreign_names only): the row's value of this column, after
// PREFIX, names the metric of the row's one gauge column, e.g. pg_settings_ + work_mem_bytes.
// Histogram (`histogram: METRIC`, foreign_names only, as postgres_exporter's HISTOGRAM): the column
// is an array of bucket upper bounds; COLUMN_bucket (cumulative counts, an array as long),
// COLUMN_sum and COLUMN_count complete it.
enum class ColumnUsage { Label, Gauge, Counter, Ignore, AddTo, RowsBeforeLimit, Untyped, NameSuffix, Histogram };

struct Column {
  std::string name;  // the result column
  ColumnUsage usage = ColumnUsage::Ignore;
  std::string label;   // for Label
  std::string metric;  // for Gauge, Counter and Untyped; the prefix for NameSuffix
  std::string help;
  std::string unit;    // e.g. "seconds", "bytes"; must appear in the metric name
  double scale = 1.0;  // multiplies the value (e.g. 0.001 for ms -> seconds)
  std::string add_to;  // for AddTo: the metric column this one adds to
};

// Turns key/value rows into one row before mapping: the value of each row
// whose key names a described column becomes that column's cell; other rows
// are dropped (e.g. PgBouncer's SHOW CONFIG: key, value, default, changeable).
struct Pivot {
  std::string key_column;
  std::string value_column;
};

// An info-style gauge: value 1 for every row, labelled by the label columns.
struct InfoMetric {
  std::string metric;
  std::string help;
};

struct Definition {
  std::string name;
  std::string help;
  Scope scope = Scope::Server;
  TargetKind target = TargetKind::Postgres;
  Millis ttl{0};
  Millis timeout{2000};
  std::optional<std::string> required_extension;
  Role required_role = Role::Any;
  // A predefined role whose privileges the connecting role must have (e.g.
  // pg_read_all_settings); without them the collector is skipped, saying so.
  std::optional<std::string> required_privilege;
  std::vector<Variant> variants;
  // `extension_versions`: the installed version of required_extension (its pg_extension.extversion) chooses the
  // variant, not only the server: each entry maps an extension version (major*100 + minor, 1.10 is 110) to the
  // server_version_num whose variant reads it, and the variant used is the one for the older of that and the
  // server. Sorted by extension version. For extensions whose objects change across versions (pg_stat_statements'
  // view): a server upgraded without ALTER EXTENSION ... UPDATE keeps the old version's columns.
  std::vector<std::pair<int, int>> extension_versions;
  std::vector<Column> columns;
  size_t max_series = 10'000;
  // Rows kept, in the query's order; the rest are dropped and counted. With
  // an ORDER BY this makes a top-N (e.g. statements by total time).
  size_t max_rows = SIZE_MAX;
  bool enabled = true;  // false: runs only when the config enables it
  std::optional<Pivot> pivot;
  std::optional<InfoMetric> info;
  // true: result columns that `columns` does not describe are ignored rather
  // than an error (for commands whose output grows columns across versions).
  bool ignore_other_columns = false;
  // `filesystem: COLUMN`: that column holds a server path; the engine adds the
  // columns of collectors/filesystem.h (fs_size_bytes, ...) for the local
  // filesystem holding it, and `columns` maps those like any other.
  std::string filesystem_column;
  // `run_in: SQL` (scope database): a query the agent runs once per collection on the target's own
  // connection, whose first column names the databases this collector has anything to say in (e.g. those
  // with a vacuum running); it runs only there. Empty: every database.
  std::string run_in_sql;
  // `run_if: SQL`: a query run first in the collector's own transaction; unless its first value is true,
  // the collector's query is not run and its result has no rows (e.g. no relation over a size floor).
  std::string run_if_sql;
  std::string origin;          // file:line of the definition, for messages
  bool foreign_names = false;  // from a Source with foreign_names

  // The variant for a server version, or nullptr when none covers it.
  const Variant* VariantFor(int server_version_num) const;
  // The server_version_num whose variant reads extension version `extension_version` (major*100 + minor), from
  // extension_versions: the entry with the highest version not above it; nullopt when older than every entry.
  std::optional<int> ServerVersionForExtension(int extension_version) const;
  const Column* FindColumn(const std::string& name) const;
  // True when the SQL takes max_rows as $1 (a rows_before_limit column is declared).
  bool LimitsItself() const;
  // The NameSuffix column, or nullptr.
  const Column* NameSuffixColumn() const;
};

// True for the usages that produce samples (gauge, counter, untyped, histogram).
bool IsMetricUsage(ColumnUsage usage);

// An extension version "major.minor" (pg_extension.extversion, e.g. "1.10") as major*100 + minor (110);
// -1 when it is not of that form.
int ExtensionVersionNum(const std::string& version);

struct LoadResult {
  std::vector<Definition> definitions;
  // "origin:line:column: what is wrong"; non-empty means nothing was loaded.
  std::vector<std::string> errors;
  bool ok() const { return errors.empty(); }
};

// Parses and validates every source. A definition in a later source replaces
// one of the same name from an earlier source (user directories override the
// embedded set). On any error, `definitions` is empty: nothing is half-loaded.
LoadResult LoadDefinitions(const std::vector<Source>& sources);

// Reads every *.yaml / *.yml file of a directory, sorted by name; a missing or
// unreadable directory or file is reported in `errors`.
std::vector<Source> ReadDefinitionDirectory(const std::string& dir, std::vector<std::string>& errors);

bool ValidMetricName(const std::string& name);
bool ValidLabelName(const std::string& name);

}  // namespace pgpulse::collectors
