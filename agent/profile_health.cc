#include "agent/profile_health.h"

#include <algorithm>
#include <map>
#include <string>

namespace pgpulse::agent {

namespace {

constexpr const char kProfilePrefix[] = "pe_";

std::string RenderSuffix(const Labels& labels) { return labels.empty() ? "" : collectors::RenderLabels(labels); }

collectors::Family MakeFamily(const char* name, const char* help, collectors::MetricKind kind) {
  collectors::Family f;
  f.name = name;
  f.help = help;
  f.kind = kind;
  return f;
}

}  // namespace

std::vector<collectors::Family> PostgresExporterHealth(const std::vector<std::shared_ptr<Target>>& targets,
                                                       const std::vector<std::shared_ptr<const Collection>>& results,
                                                       double scrape_seconds, uint64_t scrapes_total,
                                                       const TranslatedQueries* queries) {
  std::vector<collectors::Family> out(6);
  out[0] = MakeFamily("pg_exporter_last_scrape_duration_seconds",
                      "Duration of the last scrape of metrics from PostgreSQL.", collectors::MetricKind::Gauge);
  out[1] = MakeFamily("pg_exporter_scrapes_total", "Total number of times PostgreSQL was scraped for metrics.",
                      collectors::MetricKind::Counter);
  out[2] = MakeFamily("pg_exporter_last_scrape_error",
                      "Whether the last scrape of metrics from PostgreSQL resulted in an error (1 for error, 0 for "
                      "success).",
                      collectors::MetricKind::Gauge);
  out[3] = MakeFamily("pg_scrape_collector_duration_seconds", "postgres_exporter: Duration of a collector scrape.",
                      collectors::MetricKind::Gauge);
  out[4] = MakeFamily("pg_scrape_collector_success", "postgres_exporter: Whether a collector succeeded.",
                      collectors::MetricKind::Gauge);
  out[5] = MakeFamily("pg_exporter_user_queries_load_error",
                      "Whether the user queries file was loaded and parsed successfully (1 for error, 0 for success).",
                      collectors::MetricKind::Gauge);
  // A file that does not translate stops the agent, or keeps the previous one on a reload (see
  // pgpulse_config_last_reload_successful): the one being served always loaded.
  if (queries) out[5].Add(collectors::RenderLabels({{"filename", queries->path}, {"hashsum", queries->sha256}}), 0);
  for (size_t i = 0; i < targets.size() && i < results.size(); ++i) {
    if (targets[i]->kind() != collectors::TargetKind::Postgres) continue;
    const Labels& labels = targets[i]->labels();
    bool error = !results[i]->up;
    std::map<std::string, std::pair<bool, double>> by_collector;  // name -> (all succeeded, seconds)
    for (const CollectorOutcome& o : results[i]->collectors) {
      if (o.name.rfind(kProfilePrefix, 0) != 0 || o.status == CollectorStatus::Skipped ||
          o.status == CollectorStatus::Pending)
        continue;
      error = error || o.status == CollectorStatus::Failed;
      // pe_<collector>[__<part>]; pe_exporter__<map> is one of its built-in maps, no collector there.
      std::string collector = o.name.substr(sizeof kProfilePrefix - 1);
      collector = collector.substr(0, collector.find("__"));
      if (collector == "exporter" || collector == "queries") continue;  // its query path, no collector
      auto& [ok, seconds] = by_collector.try_emplace(collector, true, 0.0).first->second;
      ok = ok && o.status != CollectorStatus::Failed;
      seconds += o.duration_seconds;
    }
    out[0].Add(RenderSuffix(labels), scrape_seconds);
    out[1].Add(RenderSuffix(labels), static_cast<double>(scrapes_total));
    out[2].Add(RenderSuffix(labels), error ? 1 : 0);
    for (const auto& [name, outcome] : by_collector) {
      Labels l = labels;
      l.emplace_back("collector", name);
      out[3].Add(RenderSuffix(l), outcome.second);
      out[4].Add(RenderSuffix(l), outcome.first ? 1 : 0);
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const collectors::Family& f) { return f.values.empty(); }),
            out.end());
  return out;
}

}  // namespace pgpulse::agent
