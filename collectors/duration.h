#pragma once
// Parses Prometheus-style durations ("500ms", "15s", "1m30s", "2h").

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace pgpulse::collectors {

using Millis = std::chrono::milliseconds;

// Returns nullopt when `text` is not a duration; units: ms, s, m, h, d.
std::optional<Millis> ParseDuration(std::string_view text);

// "1m30s" style, for messages and the landing page.
std::string FormatDuration(Millis d);

}  // namespace pgpulse::collectors
