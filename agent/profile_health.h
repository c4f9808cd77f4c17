#pragma once
// postgres_exporter's own health metrics, served with --metrics.profile=postgres_exporter or both.

#include <cstdint>
#include <memory>
#include <vector>

#include "agent/exporter_queries.h"
#include "agent/target.h"
#include "collectors/family.h"

namespace pgpulse::agent {

// postgres_exporter's own health metrics for one scrape of `targets`: pg_exporter_last_scrape_duration_seconds,
// pg_exporter_scrapes_total, pg_exporter_last_scrape_error and
// pg_scrape_collector_{success,duration_seconds}{collector} (collector: the definition's name without its pe_ prefix; a
// database-scoped one succeeds when it did in every database, its duration summed). Only the profile's own collectors
// (pe_*) are counted; postgres_exporter's custom queries (pe_queries__*) count towards last_scrape_error only, as
// there. With `queries`, pg_exporter_user_queries_load_error{filename, hashsum} 0.
std::vector<collectors::Family> PostgresExporterHealth(const std::vector<std::shared_ptr<Target>>& targets,
                                                       const std::vector<std::shared_ptr<const Collection>>& results,
                                                       double scrape_seconds, uint64_t scrapes_total,
                                                       const TranslatedQueries* queries);

}  // namespace pgpulse::agent
