#include "tests/harness/polling.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/harness/http_client.h"
#include "tests/harness/metrics_text.h"

namespace pgpulse::testing {

double SecondsSince(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

void SleepSeconds(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

bool PollUntil(const std::function<bool()>& done, double timeout_seconds, double interval_seconds) {
  const auto until = Clock::now() +
                     std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_seconds));
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::duration<double>(interval_seconds));
  }
}

std::string Scrape(const AgentProcess& agent, const std::string& path, double prometheus_timeout) {
  std::vector<std::string> headers;
  if (prometheus_timeout > 0)
    headers.push_back("X-Prometheus-Scrape-Timeout-Seconds: " + std::to_string(prometheus_timeout));
  HttpResponse r = HttpGet(agent.url(path), headers);
  EXPECT_EQ(r.status, 200) << path << ": " << r.body;
  return r.body;
}

std::string ScrapeUntil(const AgentProcess& agent, const std::function<bool(const std::string&)>& done,
                        double timeout_seconds, const std::string& path) {
  std::string body;
  PollUntil(
      [&] {
        HttpResponse r = HttpGet(agent.url(path));
        body = r.body;
        return r.status == 200 && done(body);
      },
      timeout_seconds);
  return body;
}

std::string ScrapeUntilValue(const AgentProcess& agent, const std::string& series, double want,
                             double timeout_seconds) {
  return ScrapeUntil(
      agent, [&](const std::string& body) { return SampleValue(body, series) == want; }, timeout_seconds);
}

}  // namespace pgpulse::testing
