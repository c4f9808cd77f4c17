#pragma once
// The results of collectors with a ttl, per collector and database, served
// again while the ttl holds, and after it (stale) while the target refreshes
// them in the background.
//
// Not thread-safe: the target's worker thread owns it.

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "agent/collection.h"
#include "agent/deadline.h"
#include "collectors/definition.h"

namespace pgpulse::agent {

using Definitions = std::vector<collectors::Definition>;

struct CacheKey {
  std::string collector;
  std::string database;  // "" for server-scoped collectors
  bool operator<(const CacheKey& o) const { return std::tie(collector, database) < std::tie(o.collector, o.database); }
};

class ResultCache {
 public:
  struct Hit {
    const CollectorOutcome* outcome = nullptr;  // nullptr: never ran (or failed since, or was reloaded)
    bool fresh = false;                         // within its ttl
  };
  // The last outcome `def` had in `database` while `def` is the same definition (a reload
  // makes new ones), and whether its ttl still holds.
  Hit Find(const collectors::Definition& def, const std::string& database) const;
  // Keeps `outcome` for `def`'s ttl (none: nothing kept); `defs` keeps `def` alive.
  void Store(const std::shared_ptr<const Definitions>& defs, const collectors::Definition& def,
             const CollectorOutcome& outcome);
  void Forget(const std::string& collector, const std::string& database);
  // Drops the results of databases not in `databases` (sorted); server-scoped ones stay.
  void KeepDatabases(const std::vector<std::string>& databases);

 private:
  struct Entry {
    const collectors::Definition* definition;  // identity within `defs`
    std::shared_ptr<const Definitions> defs;   // keeps `definition` alive
    Clock::time_point at;
    CollectorOutcome outcome;
  };
  std::map<CacheKey, Entry> entries_;
};

}  // namespace pgpulse::agent
