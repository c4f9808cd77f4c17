#pragma once
// The differential check of --metrics.profile=postgres_exporter against Debian's postgres_exporter 0.11.1, shared
// by the integration test (PostgreSQL 15) and the version matrix (12 to 18). The profile follows postgres_exporter
// 0.20; where 0.11.1 differs (names it no longer serves, labels it added, values it writes otherwise), the tables
// in exporter_differential.cc say so, each with why.

#include <map>
#include <set>
#include <string>

#include "tests/harness/metrics_text.h"

namespace pgpulse::testing {

using Labels = std::map<std::string, std::string>;
using Families = std::map<std::string, ParsedFamily>;

std::set<std::string> LabelNames(const ParsedFamily& f);
// The label sets of `f` restricted to `names`.
std::set<Labels> LabelSets(const ParsedFamily& f, const std::set<std::string>& names);

// Every family `theirs` (0.11.1) serves by default must be in `ours` with the same name, type, label names
// (0.20's) and label sets; failures are gtest failures. Returns how many families were compared.
int CompareFamilies(const Families& theirs, const Families& ours);

// 0.11.1's values, scraped between two pgpulse scrapes (`before`, `after`), must lie between pgpulse's: a counter
// only grows; a gauge may move either way, so the distance pgpulse's two values moved is its slack. Families that
// depend on who looks (sessions, locks, the exporter itself) are left out. Returns how many samples were compared.
int CompareValuesBetween(const Families& theirs, const Families& before, const Families& after);

}  // namespace pgpulse::testing
