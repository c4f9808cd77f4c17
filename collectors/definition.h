#pragma once
// The collector definition model and its strict YAML loader.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "collectors/duration.h"
#include "collectors/embedded.h"
#include "collectors/family.h"

namespace pgpulse::collectors {

enum class Scope { Server, Database };
enum class Role { Any, Primary, Replica };

// One SQL text valid for server_version_num in [min_version, max_version).
struct Variant {
  int min_version = 0;
  int max_version = 1'000'000;
  std::string sql;
};

enum class ColumnUsage { Label, Gauge, Counter, Ignore };

struct Column {
  std::string name;  // the result column
  ColumnUsage usage = ColumnUsage::Ignore;
  std::string label;   // for Label
  std::string metric;  // for Gauge and Counter
  std::string help;
  std::string unit;    // e.g. "seconds", "bytes"; must appear in the metric name
  double scale = 1.0;  // multiplies the value (e.g. 0.001 for ms -> seconds)
};

struct Definition {
  std::string name;
  std::string help;
  Scope scope = Scope::Server;
  Millis ttl{0};
  Millis timeout{2000};
  std::optional<std::string> required_extension;
  Role required_role = Role::Any;
  // A predefined role whose privileges the connecting role must have (e.g.
  // pg_read_all_settings); without them the collector is skipped, saying so.
  std::optional<std::string> required_privilege;
  std::vector<Variant> variants;
  std::vector<Column> columns;
  size_t max_series = 10'000;
  // Rows kept, in the query's order; the rest are dropped and counted. With
  // an ORDER BY this makes a top-N (e.g. statements by total time).
  size_t max_rows = SIZE_MAX;
  bool enabled = true;  // false: runs only when the config enables it
  // `filesystem: COLUMN`: that column holds a server path; the engine adds the
  // columns of collectors/filesystem.h (fs_size_bytes, ...) for the local
  // filesystem holding it, and `columns` maps those like any other.
  std::string filesystem_column;
  std::string origin;  // file:line of the definition, for messages

  // The variant for a server version, or nullptr when none covers it.
  const Variant* VariantFor(int server_version_num) const;
  const Column* FindColumn(const std::string& name) const;
};

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
