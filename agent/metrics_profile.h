#pragma once
// The metrics profile (--metrics.profile, config key metrics_profile): which definition sets load
// (pgpulse's own, postgres_exporter's names, or both).

#include <optional>
#include <string>
#include <vector>

#include "agent/exporter_queries.h"
#include "collectors/definition.h"

namespace pgpulse::agent {

enum class MetricsProfile { Pgpulse, PostgresExporter, Both };

// "pgpulse", "postgres_exporter" or "both"; nullopt for anything else.
std::optional<MetricsProfile> ParseMetricsProfile(const std::string& text);
const char* MetricsProfileName(MetricsProfile profile);
inline bool ServesPostgresExporter(MetricsProfile p) { return p != MetricsProfile::Pgpulse; }

// The definitions a profile loads: pgpulse's embedded set and/or the postgres_exporter set, then
// `user_sources` (the config's definition directories, always pgpulse's strict rules). With
// `both`, a postgres_exporter metric that pgpulse already serves under the same name (e.g.
// pg_database_size_bytes) is served once, by pgpulse's collector.
// `queries` (postgres_exporter's queries file, translated) load last and win: a metric they produce
// is not served by the profile's own collector as well.
collectors::LoadResult LoadProfileDefinitions(MetricsProfile profile,
                                              const std::vector<collectors::Source>& user_sources,
                                              const TranslatedQueries* queries = nullptr);

}  // namespace pgpulse::agent
