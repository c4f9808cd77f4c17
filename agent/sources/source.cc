#include "agent/sources/source.h"

#include "agent/sources/backrest_collector.h"
#include "agent/sources/dumps.h"
#include "agent/sources/logs.h"

namespace pgpulse::agent::sources {

std::vector<std::unique_ptr<Source>> MakeSources(const TargetConfig& target, const Labels& labels) {
  std::vector<std::unique_ptr<Source>> sources;
  if (target.pgbackrest.enabled())
    sources.push_back(std::make_unique<BackrestCollector>(target.name, target.pgbackrest, labels));
  if (!target.backup_files.empty())
    sources.push_back(std::make_unique<DumpFileSetsSource>(target.backup_files, labels));
  sources.push_back(std::make_unique<LogSource>(target.logs, labels));
  return sources;
}

}  // namespace pgpulse::agent::sources
