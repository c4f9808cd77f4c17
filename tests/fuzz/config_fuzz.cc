// libFuzzer: agent config YAML must never crash the loader; every error names the file.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  pgpulse::agent::ConfigResult r = pgpulse::agent::LoadConfigText(text, "fuzz.yml", "", "");
  for (const auto& e : r.errors) {
    if (e.rfind("fuzz.yml", 0) != 0) std::abort();
  }
  if (r.config.targets.empty()) std::abort();
  return 0;
}
