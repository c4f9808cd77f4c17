#include "agent/metrics_profile.h"

#include <algorithm>
#include <set>

#include "collectors/embedded.h"

namespace pgpulse::agent {

namespace {

// Drops from `extra` every metric column whose name `kept` already produces, and the definitions left empty.
void DropServedTwice(const std::vector<collectors::Definition>& kept, std::vector<collectors::Definition>& extra) {
  std::set<std::string> served;
  for (const auto& d : kept) {
    for (const auto& c : d.columns)
      if (collectors::IsMetricUsage(c.usage)) served.insert(c.metric);
  }
  for (auto& d : extra) {
    if (d.NameSuffixColumn()) continue;
    for (auto& c : d.columns)
      if (collectors::IsMetricUsage(c.usage) && served.count(c.metric)) c.usage = collectors::ColumnUsage::Ignore;
  }
  extra.erase(std::remove_if(extra.begin(), extra.end(),
                             [](const collectors::Definition& d) {
                               return !d.info && std::none_of(d.columns.begin(), d.columns.end(), [](const auto& c) {
                                 return collectors::IsMetricUsage(c.usage);
                               });
                             }),
              extra.end());
}

}  // namespace

std::optional<MetricsProfile> ParseMetricsProfile(const std::string& text) {
  if (text == "pgpulse") return MetricsProfile::Pgpulse;
  if (text == "postgres_exporter") return MetricsProfile::PostgresExporter;
  if (text == "both") return MetricsProfile::Both;
  return std::nullopt;
}

const char* MetricsProfileName(MetricsProfile profile) {
  switch (profile) {
    case MetricsProfile::PostgresExporter: return "postgres_exporter";
    case MetricsProfile::Both: return "both";
    default: return "pgpulse";
  }
}

collectors::LoadResult LoadProfileDefinitions(MetricsProfile profile,
                                              const std::vector<collectors::Source>& user_sources,
                                              const TranslatedQueries* queries) {
  std::vector<collectors::Source> sources;
  if (profile == MetricsProfile::PostgresExporter) sources = collectors::EmbeddedPostgresExporterDefinitions();
  else sources = collectors::EmbeddedDefinitions();
  sources.insert(sources.end(), user_sources.begin(), user_sources.end());
  collectors::LoadResult loaded = collectors::LoadDefinitions(sources);
  if (!loaded.ok()) return loaded;
  if (profile == MetricsProfile::Both) {
    collectors::LoadResult extra = collectors::LoadDefinitions(collectors::EmbeddedPostgresExporterDefinitions());
    if (!extra.ok()) return extra;
    DropServedTwice(loaded.definitions, extra.definitions);
    for (auto& d : extra.definitions) loaded.definitions.push_back(std::move(d));
  }
  if (!queries) return loaded;
  collectors::LoadResult translated = collectors::LoadDefinitions({queries->source});
  if (!translated.ok()) return translated;
  for (auto& d : translated.definitions) {
    if (auto it = queries->origins.find(d.name); it != queries->origins.end()) d.origin = it->second;
  }
  DropServedTwice(translated.definitions, loaded.definitions);
  for (auto& d : translated.definitions) loaded.definitions.push_back(std::move(d));
  return loaded;
}

}  // namespace pgpulse::agent
