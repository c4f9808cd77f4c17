#include "collectors/plan.h"

namespace pgpulse::collectors {

Plan MakePlan(const std::vector<Definition>& definitions, const ServerFacts& facts) {
  Plan plan;
  for (const Definition& def : definitions) {
    if (def.target != facts.kind) continue;
    if (def.required_role == Role::Primary && facts.in_recovery) {
      plan.skipped.push_back({&def, "runs on a primary only; this server is in recovery"});
      continue;
    }
    if (def.required_role == Role::Replica && !facts.in_recovery) {
      plan.skipped.push_back({&def, "runs on a replica only; this server is a primary"});
      continue;
    }
    // Extensions are per database: a database-scoped collector is checked
    // against each database it runs in, by the caller.
    if (def.scope == Scope::Server && def.required_extension && !facts.extensions.count(*def.required_extension)) {
      plan.skipped.push_back({&def, "extension " + *def.required_extension + " is not installed"});
      continue;
    }
    if (def.required_privilege && !facts.privileges.count(*def.required_privilege)) {
      const std::string& p = *def.required_privilege;
      std::string hint = p == "pg_monitor" ? "" : " (included in pg_monitor)";
      plan.skipped.push_back({&def, "needs the privileges of " + p + hint + ", which role " + facts.user +
                                        " lacks: GRANT pg_monitor TO " + facts.user});
      continue;
    }
    const Variant* v = def.VariantFor(facts.version_num);
    if (!v) {
      plan.skipped.push_back({&def, "no SQL variant for server_version_num " + std::to_string(facts.version_num)});
      continue;
    }
    plan.run.push_back({&def, v});
  }
  return plan;
}

}  // namespace pgpulse::collectors
