#include "tests/harness/metrics_text.h"

#include <cstdlib>
#include <sstream>

namespace pgpulse::testing {

std::optional<double> SampleValue(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ')
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
  }
  return std::nullopt;
}

int CountSamples(const std::string& exposition, const std::string& name) {
  std::istringstream in(exposition);
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, name.size(), name) == 0 && line.size() > name.size() &&
        (line[name.size()] == ' ' || line[name.size()] == '{'))
      ++n;
  }
  return n;
}

}  // namespace pgpulse::testing
