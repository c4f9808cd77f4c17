#pragma once
// Reading Prometheus text exposition in tests.

#include <optional>
#include <string>

namespace pgpulse::testing {

// The value of the sample whose series is exactly `series` (name plus its
// label block as written, e.g. `pg_up` or `pg_x{a="b"}`), or nullopt.
std::optional<double> SampleValue(const std::string& exposition, const std::string& series);

// Number of sample lines whose metric name is `name`.
int CountSamples(const std::string& exposition, const std::string& name);

}  // namespace pgpulse::testing
