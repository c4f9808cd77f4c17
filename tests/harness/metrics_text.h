#pragma once
// Reading Prometheus text exposition in tests.

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgpulse::testing {

// The value of the sample whose series is exactly `series` (name plus its
// label block as written, e.g. `pg_up` or `pg_x{a="b"}`), or nullopt.
std::optional<double> SampleValue(const std::string& exposition, const std::string& series);

// Number of sample lines whose metric name is `name`.
int CountSamples(const std::string& exposition, const std::string& name);

// One metric family of a scrape: its TYPE ("untyped" when none is given) and its samples, each as
// its labels (name -> unescaped value) and value.
struct ParsedFamily {
  std::string type = "untyped";
  std::vector<std::pair<std::map<std::string, std::string>, double>> samples;
};

// Every family of a text exposition by name (samples without a TYPE line form an untyped family).
std::map<std::string, ParsedFamily> ParseFamilies(const std::string& exposition);

}  // namespace pgpulse::testing
