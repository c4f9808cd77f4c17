#include "tests/harness/exporter_differential.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace pgpulse::testing {

namespace {

// Families 0.11.1 serves by default that the profile does not, each with why (the profile follows 0.20).
const std::map<std::string, std::string> kNotServed = {
    // 0.11.1 maps every column its pg_stat_database query finds; 0.20's stat_database collector serves a fixed
    // list, with active_time as pg_stat_database_active_time_seconds_total (seconds).
    {"pg_stat_database_active_time", "0.20 serves pg_stat_database_active_time_seconds_total"},
    {"pg_stat_database_checksum_failures", "not in 0.20's stat_database collector"},
    {"pg_stat_database_checksum_last_failure", "not in 0.20's stat_database collector"},
    {"pg_stat_database_idle_in_transaction_time", "not in 0.20's stat_database collector"},
    {"pg_stat_database_session_time", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions_abandoned", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions_fatal", "not in 0.20's stat_database collector"},
    {"pg_stat_database_sessions_killed", "not in 0.20's stat_database collector"},
    {"pg_stat_database_parallel_workers_to_launch", "PostgreSQL 18; not in 0.20's stat_database collector"},
    {"pg_stat_database_parallel_workers_launched", "PostgreSQL 18; not in 0.20's stat_database collector"},
    // 0.11.1 maps every column of pg_stat_replication; 0.20's stat_replication collector serves two.
    {"pg_stat_replication_reply_time", "not in 0.20's stat_replication collector"},
    // The exporter's own build info and Go/HTTP runtime: no PostgreSQL metric.
    {"postgres_exporter_build_info", "the exporter's own build"},
};

// 0.11.1 puts server="host:port" on every family of its built-in query path; 0.20's collectors dropped it and
// keep it only here.
const std::set<std::string> kKeepsServerLabel = {
    "pg_static",
    "pg_stat_database_conflicts_confl_tablespace",
    "pg_stat_database_conflicts_confl_lock",
    "pg_stat_database_conflicts_confl_snapshot",
    "pg_stat_database_conflicts_confl_bufferpin",
    "pg_stat_database_conflicts_confl_deadlock",
    "pg_stat_database_conflicts_confl_active_logicalslot",  // 16+, untyped: a column the built-in map does not name
};

// Labels 0.20 added to a family.
const std::map<std::string, std::set<std::string>> kAddedLabels = {
    {"pg_stat_activity_count", {"usename", "application_name", "backend_type", "wait_event_type", "wait_event"}},
    {"pg_stat_activity_max_tx_duration",
     {"usename", "application_name", "backend_type", "wait_event_type", "wait_event"}},
    {"pg_stat_replication_pg_current_wal_lsn_bytes", {"pid"}},
    {"pg_stat_replication_pg_wal_lsn_diff", {"pid"}},
};

// Labels whose values 0.20 writes otherwise: client_addr as the inet's text (127.0.0.1/32, where 0.11.1 wrote
// the host), slot_name the standby's slot from pg_replication_slots (0.11.1: the WAL sender's pid).
const std::map<std::string, std::set<std::string>> kValuesDiffer = {
    {"pg_stat_replication_pg_current_wal_lsn_bytes", {"client_addr", "slot_name"}},
    {"pg_stat_replication_pg_wal_lsn_diff", {"client_addr", "slot_name"}},
};

// Values 0.20 reports otherwise than 0.11.1, on purpose.
const std::map<std::string, std::string> kValueDiffers = {
    {"pg_settings_extra_float_digits", "lib/pq sets 2 in postgres_exporter's own session; pgpulse serves the server's"},
    {"pg_stat_database_stats_reset", "never reset: 0.11.1 serves NaN, 0.20 serves 0"},
};

bool Ignored(const std::string& name) {
  return name.rfind("go_", 0) == 0 || name.rfind("process_", 0) == 0 || name.rfind("promhttp_", 0) == 0;
}

}  // namespace

std::set<std::string> LabelNames(const ParsedFamily& f) {
  std::set<std::string> names;
  for (const auto& [labels, value] : f.samples)
    for (const auto& [k, v] : labels) names.insert(k);
  return names;
}

std::set<Labels> LabelSets(const ParsedFamily& f, const std::set<std::string>& names) {
  std::set<Labels> sets;
  for (const auto& [labels, value] : f.samples) {
    Labels kept;
    for (const auto& [k, v] : labels)
      if (names.count(k)) kept[k] = v;
    sets.insert(kept);
  }
  return sets;
}

// Every family `theirs` (0.11.1) serves by default must be in `ours` with the same name, type, label names
// (0.20's, per the tables above) and label sets. Returns how many families were compared.
int CompareFamilies(const std::map<std::string, ParsedFamily>& theirs,
                    const std::map<std::string, ParsedFamily>& ours) {
  int compared = 0;
  for (const auto& [name, family] : theirs) {
    if (Ignored(name) || kNotServed.count(name)) continue;
    // 0.11.1 reports NaN while nothing was ever archived; 0.20 leaves the sample out then.
    if (name == "pg_stat_archiver_last_archive_age" && std::isnan(family.samples.at(0).second)) continue;
    SCOPED_TRACE(name);
    auto found = ours.find(name);
    if (found == ours.end()) {
      ADD_FAILURE() << "pgpulse does not serve " << name;
      continue;
    }
    const ParsedFamily& mine = found->second;
    EXPECT_EQ(mine.type, family.type);
    std::set<std::string> want = LabelNames(family);
    if (!kKeepsServerLabel.count(name)) want.erase("server");
    if (auto added = kAddedLabels.find(name); added != kAddedLabels.end())
      want.insert(added->second.begin(), added->second.end());
    EXPECT_EQ(LabelNames(mine), want);
    std::set<std::string> compare = LabelNames(family);
    compare.erase("server");
    if (auto differ = kValuesDiffer.find(name); differ != kValuesDiffer.end())
      for (const std::string& label : differ->second) compare.erase(label);
    ParsedFamily theirs_kept = family;
    // 0.11.1 has a row for shared objects (datid 0, datname ""), which 0.20 skips.
    theirs_kept.samples.erase(std::remove_if(theirs_kept.samples.begin(), theirs_kept.samples.end(),
                                             [](const auto& s) {
                                               auto d = s.first.find("datid");
                                               return d != s.first.end() && d->second == "0";
                                             }),
                              theirs_kept.samples.end());
    // Collector names differ by design: 0.11.1 had two (bgwriter, database), 0.20 one per collector.
    if (name.rfind("pg_scrape_collector_", 0) == 0) {
      EXPECT_EQ(LabelSets(mine, {"collector"}).count(Labels{{"collector", "stat_database"}}), 1u);
    } else {
      EXPECT_EQ(LabelSets(mine, compare), LabelSets(theirs_kept, compare));
    }
    if (kKeepsServerLabel.count(name)) {
      EXPECT_EQ(LabelSets(mine, {"server"}), LabelSets(family, {"server"}));
    }
    ++compared;
  }
  return compared;
}

namespace {

// Families whose values depend on who looks (each exporter's own session and locks) or on the exporter itself.
bool ObserverDependent(const std::string& name) {
  return name.rfind("pg_stat_activity_", 0) == 0 || name == "pg_locks_count" || name == "pg_up" ||
         name.rfind("pg_exporter_", 0) == 0 || name.rfind("pg_scrape_collector_", 0) == 0;
}

}  // namespace

// 0.11.1's values, scraped between two pgpulse scrapes (`before`, `after`), must lie between pgpulse's: a counter
// only grows; a gauge may move either way, so the distance pgpulse's two values moved is its slack. Returns how
// many samples were compared.
int CompareValuesBetween(const std::map<std::string, ParsedFamily>& theirs,
                         const std::map<std::string, ParsedFamily>& before,
                         const std::map<std::string, ParsedFamily>& after) {
  auto by_labels = [](const std::map<std::string, ParsedFamily>& families, const std::string& name) {
    std::map<Labels, double> values;
    if (auto f = families.find(name); f != families.end())
      for (const auto& [labels, value] : f->second.samples) values[labels] = value;
    return values;
  };
  int compared = 0;
  for (const auto& [name, family] : theirs) {
    if (Ignored(name) || kNotServed.count(name) || ObserverDependent(name) || kValueDiffers.count(name)) continue;
    if (family.type != "counter" && family.type != "gauge") continue;
    const auto b = by_labels(before, name), a = by_labels(after, name);
    for (auto [labels, value] : family.samples) {
      if (labels.count("datid") && labels.at("datid") == "0") continue;  // 0.20 has no shared-objects row
      if (!kKeepsServerLabel.count(name)) labels.erase("server");
      if (kValuesDiffer.count(name)) continue;  // no label set to match the sample by
      auto bi = b.find(labels), ai = a.find(labels);
      if (bi == b.end() || ai == a.end()) continue;  // label sets are CompareFamilies' business
      SCOPED_TRACE(name);
      if (std::isnan(value)) {
        EXPECT_TRUE(std::isnan(bi->second) && std::isnan(ai->second));
        continue;
      }
      const double lo = std::min(bi->second, ai->second), hi = std::max(bi->second, ai->second);
      const double slack = (family.type == "gauge" ? hi - lo : 0) + 1e-9 * std::max(1.0, std::fabs(hi));
      EXPECT_GE(value, lo - slack) << "pgpulse " << bi->second << " then " << ai->second;
      EXPECT_LE(value, hi + slack) << "pgpulse " << bi->second << " then " << ai->second;
      ++compared;
    }
  }
  return compared;
}

}  // namespace pgpulse::testing
