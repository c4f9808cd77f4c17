#pragma once
// The metric reference (Markdown) generated from collector definitions.

#include <string>
#include <vector>

#include "collectors/definition.h"

namespace pgpulse::collectors {

// "12+", "14-16", "all": the PostgreSQL majors a definition has SQL for.
std::string VersionSpan(const Definition& def);

// One section per collector, one table row per metric: type, labels, unit,
// help, versions, default ttl. Deterministic, so a test can compare it with
// the committed file.
std::string RenderReference(const std::vector<Definition>& definitions);

}  // namespace pgpulse::collectors
