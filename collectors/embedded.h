#pragma once
// The collector definitions compiled into the binary (queries/*.yaml).

#include <string>
#include <vector>

namespace pgpulse::collectors {

// One YAML document and where it came from (a path, or "embedded:queries/x.yaml").
struct Source {
  std::string origin;
  std::string text;
  // Definitions that reproduce another exporter's names (the postgres_exporter profile): its
  // counters without _total, its units outside the name, its untyped metrics. Set only for
  // the embedded profile set, never for files a user gives.
  bool foreign_names = false;
};

const std::vector<Source>& EmbeddedDefinitions();
// queries/postgres_exporter/*.yaml: postgres_exporter's default collectors, its names (foreign_names set).
const std::vector<Source>& EmbeddedPostgresExporterDefinitions();

}  // namespace pgpulse::collectors
