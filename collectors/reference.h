#pragma once
// The metric reference (Markdown) generated from collector definitions.

#include <string>
#include <vector>

#include "collectors/definition.h"

namespace pgpulse::collectors {

// "12+", "14-16", "all": the PostgreSQL majors a definition has SQL for.
std::string VersionSpan(const Definition& def);

// A metric of a source that is not SQL (e.g. the pgBackRest command), declared
// in code beside that source, so the reference lists it as it lists a collector's.
struct DeclaredMetric {
  std::string name;
  std::string type;    // gauge or counter
  std::string labels;  // "stanza, type"; "-" for none
  std::string unit;    // "-" for none
  std::string help;
};
struct DeclaredSource {
  std::string name;   // section title, e.g. pgbackrest
  std::string about;  // one paragraph: what runs it and how it is configured
  std::vector<DeclaredMetric> metrics;
};

// One section per collector, one table row per metric: type, labels, unit,
// help, versions, default ttl; then one section per declared source.
// Deterministic, so a test can compare it with the committed file.
std::string RenderReference(const std::vector<Definition>& definitions,
                            const std::vector<DeclaredSource>& sources = {});

}  // namespace pgpulse::collectors
