// libFuzzer: `pgbackrest info --output=json` output to metrics. Any input must
// give either an error and no families, or families without an error unless
// the stanza status is bad; never a crash, a hang or undefined behaviour.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/sources/pgbackrest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  pgpulse::agent::BackrestReport r = pgpulse::agent::ParseBackrestInfo(text, "main", {{"cluster", "c"}});
  if (r.families.empty() && r.error.empty()) std::abort();  // silence is never an answer
  size_t series = 0;
  for (const auto& f : r.families) {
    if (f.name.rfind("pgbackrest_", 0) != 0 || f.values.size() != f.suffix_end.size()) std::abort();
    series += f.size();
  }
  if (series != r.series) std::abort();
  return 0;
}
