#include "agent/result_cache.h"

#include <algorithm>

namespace pgpulse::agent {

ResultCache::Hit ResultCache::Find(const collectors::Definition& def, const std::string& database) const {
  auto it = entries_.find(CacheKey{def.name, database});
  if (it == entries_.end() || it->second.definition != &def) return {};
  return {&it->second.outcome, Clock::now() - it->second.at < def.ttl};
}

void ResultCache::Store(const std::shared_ptr<const Definitions>& defs, const collectors::Definition& def,
                        const CollectorOutcome& outcome) {
  if (def.ttl.count() <= 0) return;
  entries_[CacheKey{def.name, outcome.database}] = Entry{&def, defs, Clock::now(), outcome};
}

void ResultCache::Forget(const std::string& collector, const std::string& database) {
  entries_.erase(CacheKey{collector, database});
}

void ResultCache::KeepDatabases(const std::vector<std::string>& databases) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    const std::string& db = it->first.database;
    if (!db.empty() && !std::binary_search(databases.begin(), databases.end(), db)) it = entries_.erase(it);
    else ++it;
  }
}

}  // namespace pgpulse::agent
