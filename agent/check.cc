#include "agent/check.h"

#include <cstdio>
#include <ostream>

namespace pgpulse::agent {

int RunCheck(const AgentOptions& options, bool connect, std::ostream& out, std::ostream& err) {
  SelfMetrics metrics("check", "check");
  ConfigResult loaded = LoadConfig(options.config_file, options.data_source_name, options.password_file);
  std::vector<std::string> errors;
  auto rt = BuildRuntime(loaded, nullptr, metrics, errors);
  if (!rt) {
    for (const auto& e : errors) err << "error: " << e << "\n";
    err << errors.size() << " error(s); configuration rejected\n";
    return 1;
  }
  out << "configuration ok: " << rt->config.origin << ", " << rt->targets.size() << " target(s), "
      << rt->definitions->size() << " collector(s)\n";
  if (!connect) return 0;

  int status = 0;
  for (const auto& t : rt->targets) {
    auto c = t->Scrape(rt->definitions, Clock::now() + std::chrono::seconds(60));
    out << "\ntarget " << t->config().name << " (" << t->spec().display << "): ";
    if (!c->up) {
      out << "DOWN: " << c->error << "\n";
      status = 1;
      continue;
    }
    if (c->facts.kind == collectors::TargetKind::PgBouncer)
      out << "up, PgBouncer " << c->facts.version << " (admin console)\n";
    else
      out << "up, PostgreSQL " << c->facts.version << (c->facts.in_recovery ? ", replica" : ", primary") << "\n";
    char line[512];
    std::snprintf(line, sizeof line, "%-28s %-8s %10s %8s  %s\n", "COLLECTOR", "STATUS", "DURATION", "SERIES",
                  "DETAIL");
    out << line;
    for (const CollectorOutcome& o : c->collectors) {
      char dur[32];
      std::snprintf(dur, sizeof dur, "%.1fms", o.duration_seconds * 1000);
      std::string name = o.database.empty() ? o.name : o.name + " (" + o.database + ")";
      std::snprintf(line, sizeof line, "%-28s %-8s %10s %8zu  ", name.c_str(), StatusName(o.status), dur, o.series);
      out << line << o.detail << "\n";
      if (o.status == CollectorStatus::Failed) status = 1;
    }
  }
  return status;
}

}  // namespace pgpulse::agent
