#pragma once
// The agent's own metrics (pgpulse_*, process_*), kept in a prometheus-cpp
// Registry. All methods are thread-safe (prometheus-cpp metrics are atomic;
// the registry locks internally).

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "collectors/family.h"

namespace pgpulse::agent {

class SelfMetrics {
 public:
  SelfMetrics(const std::string& version, const std::string& revision);

  // One collector's work in one collection, summed over the databases it ran
  // in: `runs` queries executed, `failures` of them (or of its databases) failed,
  // `cache_hits` answered from its ttl cache.
  void CollectorDone(const std::string& target, const std::string& collector, size_t runs, size_t failures,
                     size_t cache_hits, double seconds, size_t series, size_t dropped_duplicates, size_t dropped_limit);
  void ScrapeDone(const std::string& target, double seconds, double deadline_seconds, bool deadline_exceeded);
  void ReloadDone(bool success);
  // Drops every series labelled target=`target` (an ad-hoc /probe target that was evicted).
  void ForgetTarget(const std::string& target);

  // The registry's families plus process metrics, ready for the writer.
  std::vector<collectors::Family> Collect() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& collector_duration_;
  prometheus::Family<prometheus::Gauge>& collector_success_;
  prometheus::Family<prometheus::Counter>& collector_errors_;
  prometheus::Family<prometheus::Counter>& collector_cache_hits_;
  prometheus::Family<prometheus::Gauge>& collector_series_;
  prometheus::Family<prometheus::Counter>& collector_dropped_;
  prometheus::Family<prometheus::Histogram>& scrape_duration_;
  prometheus::Family<prometheus::Counter>& scrapes_;
  prometheus::Family<prometheus::Counter>& deadline_exceeded_;
  prometheus::Family<prometheus::Gauge>& scrape_deadline_;
  prometheus::Gauge& reload_success_;
  prometheus::Gauge& reload_time_;
  prometheus::Family<prometheus::Counter>& reloads_;
  double start_time_;
  mutable std::mutex mu_;
  std::map<std::string, std::set<std::string>> collectors_;  // per target, as reported; guarded by mu_
};

}  // namespace pgpulse::agent
