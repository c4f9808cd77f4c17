#pragma once
// The collector definitions compiled into the binary (queries/*.yaml).

#include <string>
#include <vector>

namespace pgpulse::collectors {

// One YAML document and where it came from (a path, or "embedded:queries/x.yaml").
struct Source {
  std::string origin;
  std::string text;
};

const std::vector<Source>& EmbeddedDefinitions();

}  // namespace pgpulse::collectors
