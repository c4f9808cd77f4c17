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

namespace {

// Parses `{a="x",b="y"}` starting at line[pos] == '{'; returns the position after '}'.
size_t ParseLabelBlock(const std::string& line, size_t pos, std::map<std::string, std::string>& labels) {
  ++pos;
  while (pos < line.size() && line[pos] != '}') {
    size_t eq = line.find('=', pos);
    std::string name = line.substr(pos, eq - pos);
    std::string value;
    for (pos = eq + 2; pos < line.size() && line[pos] != '"'; ++pos) {
      if (line[pos] == '\\' && pos + 1 < line.size()) {
        ++pos;
        value.push_back(line[pos] == 'n' ? '\n' : line[pos]);
      } else {
        value.push_back(line[pos]);
      }
    }
    labels[name] = value;
    pos += 1;
    if (pos < line.size() && line[pos] == ',') ++pos;
  }
  return pos + 1;
}

}  // namespace

std::map<std::string, ParsedFamily> ParseFamilies(const std::string& exposition) {
  std::map<std::string, ParsedFamily> families;
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string name, type;
      words >> name >> type;
      families[name].type = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    size_t end = line.find_first_of("{ ");
    if (end == std::string::npos) continue;
    std::map<std::string, std::string> labels;
    size_t pos = line[end] == '{' ? ParseLabelBlock(line, end, labels) : end;
    families[line.substr(0, end)].samples.emplace_back(std::move(labels), std::strtod(line.c_str() + pos, nullptr));
  }
  return families;
}

}  // namespace pgpulse::testing
