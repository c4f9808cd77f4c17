#include "agent/sources/source.h"

#include "agent/sources/backrest_collector.h"

namespace pgpulse::agent::sources {

std::vector<std::unique_ptr<Source>> MakeSources(const TargetConfig& target, const Labels& labels) {
  std::vector<std::unique_ptr<Source>> sources;
  if (target.pgbackrest.enabled())
    sources.push_back(std::make_unique<BackrestCollector>(target.name, target.pgbackrest, labels));
  return sources;
}

}  // namespace pgpulse::agent::sources
