#pragma once
// pgBackRest backup freshness: the command line that asks a repository about
// one stanza (`pgbackrest info --output=json`), and its answer as metric families.

#include <string>
#include <utility>
#include <vector>

#include "agent/config.h"
#include "collectors/family.h"
#include "collectors/reference.h"

namespace pgpulse::agent {

// Every metric the pgBackRest source reports, with its help text: the one place they are declared
// (the families below take their help from it; `pgpulse reference` lists it in queries/METRICS.md).
const collectors::DeclaredSource& BackrestSource();

// The argv the agent runs: COMMAND [--config=C] --stanza=S --output=json ARGS... info
std::vector<std::string> BackrestInfoArgv(const BackrestConfig& config);

struct BackrestReport {
  std::vector<collectors::Family> families;  // also when the stanza status is not ok
  size_t series = 0;
  // "" when the stanza answered ok (status 0, or 2 "no valid backup": a fresh stanza);
  // else what is wrong: invalid JSON, a missing field, or the stanza and repository status messages.
  std::string error;
};

// Parses `pgbackrest info --output=json` output for `stanza`; `labels` come
// first on every sample (the target's), then stanza (and type where it applies).
// Never throws; malformed input gives an error and no families.
BackrestReport ParseBackrestInfo(const std::string& json, const std::string& stanza,
                                 const std::vector<std::pair<std::string, std::string>>& labels);

// The families for a failed run (the command failed, or its output was unusable):
// pgbackrest_up 0, so dashboards and alerts see the failure next to the data.
std::vector<collectors::Family> BackrestDownFamilies(const std::string& stanza,
                                                     const std::vector<std::pair<std::string, std::string>>& labels);

}  // namespace pgpulse::agent
