// Waiting in tests: poll for a condition with a bound instead of sleeping a guessed time,
// and scrape a running agent.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tests/harness/agent_process.h"

namespace pgpulse::testing {

using Clock = std::chrono::steady_clock;

// Seconds elapsed since `since`.
double SecondsSince(Clock::time_point since);

void SleepSeconds(double seconds);

// Calls `done` every `interval_seconds` until it returns true (then true) or `timeout_seconds`
// have passed (then false). `done` runs at least once.
bool PollUntil(const std::function<bool()>& done, double timeout_seconds = 15, double interval_seconds = 0.1);

// GET `path` from the agent; a status other than 200 fails the test (EXPECT) and the body is returned anyway.
// `prometheus_timeout` > 0 sends it as X-Prometheus-Scrape-Timeout-Seconds.
std::string Scrape(const AgentProcess& agent, const std::string& path = "/metrics", double prometheus_timeout = 0);
// /metrics as Prometheus scrapes it with a scrape timeout of `prometheus_timeout` seconds.
inline std::string Scrape(const AgentProcess& agent, double prometheus_timeout) {
  return Scrape(agent, "/metrics", prometheus_timeout);
}

// Scrapes `path` until `done(body)` holds or `timeout_seconds` pass; returns the last body either way,
// so the caller's assertion on it shows what the agent served.
std::string ScrapeUntil(const AgentProcess& agent, const std::function<bool(const std::string&)>& done,
                        double timeout_seconds = 10, const std::string& path = "/metrics");

// ScrapeUntil the sample `series` (name{labels} as the exposition writes it) has the value `want`.
std::string ScrapeUntilValue(const AgentProcess& agent, const std::string& series, double want,
                             double timeout_seconds = 15);

}  // namespace pgpulse::testing
