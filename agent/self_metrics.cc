#include "agent/self_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "collectors/exposition.h"

namespace pgpulse::agent {

namespace {

double Now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

void AddProcessGauge(std::vector<collectors::Family>& out, const char* name, const char* help,
                     collectors::MetricKind kind, double value) {
  collectors::Family f;
  f.name = name;
  f.help = help;
  f.kind = kind;
  f.Add("", value);
  out.push_back(std::move(f));
}

}  // namespace

SelfMetrics::SelfMetrics(const std::string& version, const std::string& revision)
    : registry_(std::make_shared<prometheus::Registry>()),
      collector_duration_(BuildGauge()
                              .Name("pgpulse_collector_duration_seconds")
                              .Help("How long the collector's query took in its last run, in seconds.")
                              .Register(*registry_)),
      collector_success_(
          BuildGauge()
              .Name("pgpulse_collector_success")
              .Help("1 if the collector's last run succeeded (or was served from its cache), 0 if it failed.")
              .Register(*registry_)),
      collector_errors_(BuildCounter()
                            .Name("pgpulse_collector_errors_total")
                            .Help("Collector runs that failed (query error, timeout, bad result).")
                            .Register(*registry_)),
      collector_cache_hits_(BuildCounter()
                                .Name("pgpulse_collector_cache_hits_total")
                                .Help("Scrapes served from the collector's cache because its ttl had not expired.")
                                .Register(*registry_)),
      collector_series_(BuildGauge()
                            .Name("pgpulse_collector_series")
                            .Help("Series the collector emitted in its last run.")
                            .Register(*registry_)),
      collector_dropped_(
          BuildCounter()
              .Name("pgpulse_collector_series_dropped_total")
              .Help("Series dropped: reason=duplicate for repeated label sets, reason=limit beyond max_series.")
              .Register(*registry_)),
      scrape_duration_(BuildHistogram()
                           .Name("pgpulse_scrape_duration_seconds")
                           .Help("Time to collect a target for one scrape, in seconds.")
                           .Register(*registry_)),
      scrapes_(BuildCounter().Name("pgpulse_scrapes_total").Help("Scrapes served, per target.").Register(*registry_)),
      deadline_exceeded_(
          BuildCounter()
              .Name("pgpulse_scrape_deadline_exceeded_total")
              .Help("Scrapes answered with pg_up 0 because the server did not answer before the deadline.")
              .Register(*registry_)),
      scrape_deadline_(BuildGauge()
                           .Name("pgpulse_scrape_deadline_seconds")
                           .Help("Time the last scrape of the target had to answer in, in seconds: Prometheus's scrape "
                                 "timeout minus scrape.timeout_offset, capped by scrape.timeout.")
                           .Register(*registry_)),
      reload_success_(BuildGauge()
                          .Name("pgpulse_config_last_reload_successful")
                          .Help("1 if the last configuration load succeeded, 0 if it was rejected.")
                          .Register(*registry_)
                          .Add({})),
      reload_time_(BuildGauge()
                       .Name("pgpulse_config_last_reload_success_timestamp_seconds")
                       .Help("When the configuration was last loaded successfully, as seconds since the Unix epoch.")
                       .Register(*registry_)
                       .Add({})),
      reloads_(BuildCounter()
                   .Name("pgpulse_config_reloads_total")
                   .Help("Configuration loads, by result (success or failure).")
                   .Register(*registry_)),
      start_time_(Now()) {
  BuildGauge()
      .Name("pgpulse_build_info")
      .Help("Always 1; labels say which pgpulse build is running.")
      .Register(*registry_)
      .Add({{"version", version}, {"revision", revision}, {"compiler", __VERSION__}})
      .Set(1);
}

void SelfMetrics::CollectorDone(const std::string& target, const std::string& collector, size_t runs, size_t failures,
                                size_t cache_hits, double seconds, size_t series, size_t dropped_duplicates,
                                size_t dropped_limit) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    collectors_[target].insert(collector);
  }
  prometheus::Labels l{{"target", target}, {"collector", collector}};
  if (runs > 0) collector_duration_.Add(l).Set(seconds);
  collector_success_.Add(l).Set(failures == 0 ? 1 : 0);
  collector_errors_.Add(l).Increment(static_cast<double>(failures));
  collector_cache_hits_.Add(l).Increment(static_cast<double>(cache_hits));
  collector_series_.Add(l).Set(static_cast<double>(series));
  collector_dropped_.Add({{"target", target}, {"collector", collector}, {"reason", "duplicate"}})
      .Increment(static_cast<double>(dropped_duplicates));
  collector_dropped_.Add({{"target", target}, {"collector", collector}, {"reason", "limit"}})
      .Increment(static_cast<double>(dropped_limit));
}

void SelfMetrics::ScrapeDone(const std::string& target, double seconds, double deadline_seconds,
                             bool deadline_exceeded) {
  scrape_deadline_.Add({{"target", target}}).Set(deadline_seconds);
  static const prometheus::Histogram::BucketBoundaries buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5,   1,    2.5,   5,    10,  30};
  scrape_duration_.Add({{"target", target}}, buckets).Observe(seconds);
  scrapes_.Add({{"target", target}}).Increment();
  auto& exceeded = deadline_exceeded_.Add({{"target", target}});
  if (deadline_exceeded) exceeded.Increment();
}

void SelfMetrics::ForgetTarget(const std::string& target) {
  std::set<std::string> collectors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = collectors_.find(target);
    if (it != collectors_.end()) {
      collectors = std::move(it->second);
      collectors_.erase(it);
    }
  }
  // prometheus-cpp removes a child by pointer; Add() with the same labels finds it.
  auto drop = [](auto& family, const prometheus::Labels& labels) { family.Remove(&family.Add(labels)); };
  for (const std::string& c : collectors) {
    prometheus::Labels l{{"target", target}, {"collector", c}};
    drop(collector_duration_, l);
    drop(collector_success_, l);
    drop(collector_errors_, l);
    drop(collector_cache_hits_, l);
    drop(collector_series_, l);
    drop(collector_dropped_, {{"target", target}, {"collector", c}, {"reason", "duplicate"}});
    drop(collector_dropped_, {{"target", target}, {"collector", c}, {"reason", "limit"}});
  }
  prometheus::Labels t{{"target", target}};
  drop(scrape_deadline_, t);
  scrape_duration_.Remove(&scrape_duration_.Add(t, prometheus::Histogram::BucketBoundaries{}));
  drop(scrapes_, t);
  drop(deadline_exceeded_, t);
}

void SelfMetrics::ReloadDone(bool success) {
  reload_success_.Set(success ? 1 : 0);
  if (success) reload_time_.Set(Now());
  reloads_.Add({{"result", success ? "success" : "failure"}}).Increment();
}

std::vector<collectors::Family> SelfMetrics::Collect() const {
  std::vector<collectors::Family> out = collectors::FromPrometheus(registry_->Collect());
  using collectors::MetricKind;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  double cpu = 0, vsize = 0, rss = 0;
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    if (const char* p = std::strrchr(buf, ')')) {
      unsigned long utime = 0, stime = 0, vs = 0;
      long rs = 0;
      if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u %lu %ld",
                      &utime, &stime, &vs, &rs) == 4) {
        cpu = (utime + stime) / ticks;
        vsize = static_cast<double>(vs);
        rss = rs * page;
      }
    }
  }
  double fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) fds += e->d_name[0] == '.' ? 0 : 1;
    closedir(d);
    fds -= 1;  // the directory handle itself
  }
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  AddProcessGauge(out, "pgpulse_invalid_utf8_replacements_total",
                  "Bytes of label values from the database that were not valid UTF-8 and were replaced by U+FFFD.",
                  MetricKind::Counter, static_cast<double>(collectors::InvalidUtf8Replacements()));
  AddProcessGauge(out, "process_cpu_seconds_total", "User and system CPU time spent, in seconds.", MetricKind::Counter,
                  cpu);
  AddProcessGauge(out, "process_resident_memory_bytes", "Resident memory size, in bytes.", MetricKind::Gauge, rss);
  AddProcessGauge(out, "process_virtual_memory_bytes", "Virtual memory size, in bytes.", MetricKind::Gauge, vsize);
  AddProcessGauge(out, "process_open_fds", "Open file descriptors.", MetricKind::Gauge, fds);
  AddProcessGauge(out, "process_max_fds", "Limit on open file descriptors.", MetricKind::Gauge,
                  static_cast<double>(lim.rlim_cur));
  AddProcessGauge(out, "process_start_time_seconds", "When the process started, as seconds since the Unix epoch.",
                  MetricKind::Gauge, start_time_);
  return out;
}

}  // namespace pgpulse::agent
