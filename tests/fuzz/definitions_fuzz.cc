// libFuzzer: collector definition YAML must never crash the loader, and a
// rejected file must never leave definitions behind.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "collectors/definition.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  pgpulse::collectors::LoadResult r = pgpulse::collectors::LoadDefinitions({{"fuzz.yaml", text}});
  if (!r.ok() && !r.definitions.empty()) std::abort();
  for (const auto& e : r.errors) {
    if (e.rfind("fuzz.yaml", 0) != 0) std::abort();  // every error says where
  }
  return 0;
}
