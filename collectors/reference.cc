#include "collectors/reference.h"

#include <algorithm>

namespace pgpulse::collectors {

namespace {

std::string Major(int version_num) { return std::to_string(version_num / 10000); }

std::string Cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out.push_back(c);
  }
  return out;
}

}  // namespace

std::string VersionSpan(const Definition& def) {
  int lo = 1'000'000, hi = 0;
  for (const Variant& v : def.variants) {
    lo = std::min(lo, v.min_version);
    hi = std::max(hi, v.max_version);
  }
  if (def.target == TargetKind::PgBouncer) {
    // PgBouncer versions: major*10000 + minor*100 + patch.
    auto name = [](int v) { return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100); };
    if (lo == 0 && hi >= 1'000'000) return "all";
    if (hi >= 1'000'000) return "PgBouncer " + name(lo) + "+";
    return "PgBouncer " + name(lo) + " to below " + name(hi);
  }
  if (lo <= 120000 && hi >= 1'000'000) return "all";
  std::string from = lo <= 120000 ? "12" : Major(lo);
  if (hi >= 1'000'000) return from + "+";
  // max_version is exclusive: [120000, 140000) is 12-13.
  return from + "-" + Major(hi - 1);
}

std::string RenderReference(const std::vector<Definition>& definitions, const std::vector<DeclaredSource>& sources) {
  std::string out =
      "# Metric reference\n\n"
      "Generated from `queries/*.yaml` (and the sources that are not SQL, last) by `pgpulse reference`;\n"
      "a test fails when this file is stale.\n"
      "Regenerate with `./build/pgpulse reference > queries/METRICS.md`.\n\n"
      "Every scrape also has `pg_up` and `pg_info` (made by the agent, not a definition). Collectors with\n"
      "scope `database` add a `datname` label; with several targets every sample also has `target`.\n"
      "`database (run_in)`: only in the databases where there is something to report (a vacuum running, a\n"
      "subscription), asked once per scrape.\n"
      "A PgBouncer target (scope `pgbouncer` below) has `pgbouncer_up` and `pgbouncer_info{version}` instead,\n"
      "and runs only the pgbouncer collectors; a PostgreSQL target never runs them.\n\n";
  std::vector<const Definition*> sorted;
  for (const Definition& d : definitions) sorted.push_back(&d);
  std::sort(sorted.begin(), sorted.end(), [](const Definition* a, const Definition* b) { return a->name < b->name; });
  out +=
      "| collector | scope | versions | requires | ttl | timeout | default |\n| --- | --- | --- | --- | --- | --- | "
      "--- |\n";
  for (const Definition* d : sorted) {
    std::string requires_what;
    if (d->required_extension) requires_what = "extension " + *d->required_extension;
    if (d->required_privilege) {
      if (!requires_what.empty()) requires_what += ", ";
      requires_what += "privileges of " + *d->required_privilege;
    }
    if (d->required_role != Role::Any) {
      if (!requires_what.empty()) requires_what += ", ";
      requires_what += d->required_role == Role::Primary ? "primary" : "replica";
    }
    const char* scope = d->target == TargetKind::PgBouncer ? "pgbouncer"
                        : !d->run_in_sql.empty()           ? "database (run_in)"
                        : d->scope == Scope::Database      ? "database"
                                                           : "server";
    out += "| [" + d->name + "](#" + d->name + ") | " + scope + " | " + VersionSpan(*d) + " | " +
           (requires_what.empty() ? "-" : requires_what) + " | " + FormatDuration(d->ttl) + " | " +
           FormatDuration(d->timeout) + " | " + (d->enabled ? "on" : "off") + " |\n";
  }
  for (const Definition* d : sorted) {
    out += "\n## " + d->name + "\n\n" + Cell(d->help) + "\n\n";
    std::string labels;
    if (d->scope == Scope::Database) labels = "datname";
    for (const Column& c : d->columns) {
      if (c.usage != ColumnUsage::Label) continue;
      labels += std::string(labels.empty() ? "" : ", ") + c.label;
    }
    if (d->max_rows != SIZE_MAX) out += "Keeps the first " + std::to_string(d->max_rows) + " rows (`max_rows`).\n\n";
    out += "| metric | type | labels | unit | help |\n| --- | --- | --- | --- | --- |\n";
    for (const Column& c : d->columns) {
      if (!IsMetricUsage(c.usage)) continue;
      out += "| `" + c.metric + "` | " +
             (c.usage == ColumnUsage::Counter     ? "counter"
              : c.usage == ColumnUsage::Untyped   ? "untyped"
              : c.usage == ColumnUsage::Histogram ? "histogram"
                                                  : "gauge") +
             " | " + (labels.empty() ? "-" : labels) + " | " + (c.unit.empty() ? "-" : c.unit) + " | " + Cell(c.help) +
             " |\n";
    }
    if (d->info)
      out += "| `" + d->info->metric + "` | gauge | " + (labels.empty() ? "-" : labels) + " | - | " +
             Cell(d->info->help) + " |\n";
  }
  for (const DeclaredSource& s : sources) {
    out += "\n## " + s.name + "\n\n" + Cell(s.about) +
           "\n\n| metric | type | labels | unit | help |\n| --- | --- | --- | --- | --- |\n";
    for (const DeclaredMetric& m : s.metrics)
      out += "| `" + m.name + "` | " + m.type + " | " + m.labels + " | " + m.unit + " | " + Cell(m.help) + " |\n";
  }
  return out;
}

}  // namespace pgpulse::collectors
