#include "agent/check.h"

#include <cstdio>
#include <ostream>
#include <regex>

namespace pgpulse::agent {

namespace {

// SQL that changes the server or the session rather than reading statistics. Definitions are
// the operator's, so this is a warning, not an error; the role's privileges decide what runs.
const std::vector<std::pair<std::regex, const char*>>& SideEffects() {
  static const std::vector<std::pair<std::regex, const char*>> list{
      {std::regex(R"(\bpg_(terminate|cancel)_backend\b)", std::regex::icase), "ends or cancels other sessions"},
      {std::regex(R"(\bpg_(try_)?advisory(_xact)?_lock(_shared)?\b)", std::regex::icase), "takes advisory locks"},
      {std::regex(R"(\bpg_(switch_wal|create_restore_point|promote|reload_conf|rotate_logfile)\b)", std::regex::icase),
       "changes the server's state"},
      {std::regex(R"(\blo_(from_bytea|import|export|create|creat|unlink|put)\b)", std::regex::icase),
       "writes large objects or files"},
      {std::regex(R"(\bcopy\b[\s\S]*\bprogram\b)", std::regex::icase), "runs a program on the server (COPY PROGRAM)"},
      {std::regex(R"(\bset\s+(local\s+|session\s+)?(role|session\s+authorization)\b)", std::regex::icase),
       "changes the session's role"},
      {std::regex(R"(\b(set_config|dblink\w*|pg_file_write)\s*\()", std::regex::icase),
       "changes settings or reaches other servers"},
  };
  return list;
}

}  // namespace

std::vector<std::string> SideEffectWarnings(const Definitions& defs) {
  std::vector<std::string> out;
  for (const auto& d : defs) {
    for (const auto& [pattern, what] : SideEffects()) {
      for (const auto& v : d.variants) {
        std::smatch m;
        if (!std::regex_search(v.sql, m, pattern)) continue;
        out.push_back(d.origin + ": collector '" + d.name + "' " + what + " (" + m.str(0) +
                      "); collectors should only read");
        break;
      }
    }
  }
  return out;
}

int RunCheck(const AgentOptions& options, bool connect, std::ostream& out, std::ostream& err) {
  SelfMetrics metrics("check", "check");
  ConfigResult loaded = LoadAgentConfig(options);
  std::vector<std::string> errors;
  auto rt = BuildRuntime(loaded, nullptr, metrics, errors);
  if (!rt) {
    for (const auto& e : errors) err << "error: " << e << "\n";
    err << errors.size() << " error(s); configuration rejected\n";
    return 1;
  }
  for (const auto& w : SideEffectWarnings(*rt->definitions)) err << "warning: " << w << "\n";
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
    else out << "up, PostgreSQL " << c->facts.version << (c->facts.in_recovery ? ", replica" : ", primary") << "\n";
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
