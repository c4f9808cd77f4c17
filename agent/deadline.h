#pragma once
// Time budgets inside one collection, all derived from the scrape's deadline.

#include <algorithm>
#include <chrono>

#include "collectors/duration.h"

namespace pgpulse::agent {

using Clock = std::chrono::steady_clock;

// Below this much time left, a collector is not started: its result could not arrive in time.
constexpr std::chrono::milliseconds kMinCollectorTime{20};
// The most a catalog query of the agent's own (facts, discovery, extensions, location) may take.
constexpr std::chrono::milliseconds kCatalogTimeout{2'000};

// The time left until `deadline` (negative once past it).
inline collectors::Millis TimeLeft(Clock::time_point deadline) {
  return std::chrono::duration_cast<collectors::Millis>(deadline - Clock::now());
}

// The timeout for one of the agent's own catalog queries: what is left, between
// kMinCollectorTime and kCatalogTimeout.
inline collectors::Millis CatalogTimeout(Clock::time_point deadline) {
  return std::max(kMinCollectorTime, std::min(kCatalogTimeout, TimeLeft(deadline)));
}

}  // namespace pgpulse::agent
