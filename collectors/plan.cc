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
    int version_num = facts.version_num;
    std::string extension_note;
    if (!def.extension_versions.empty() && def.required_extension) {
      // The extension's objects are those of its installed version, which can be older than the server's.
      auto installed = facts.extension_versions.find(*def.required_extension);
      const std::string text = installed == facts.extension_versions.end() ? "" : installed->second;
      std::optional<int> reads = def.ServerVersionForExtension(ExtensionVersionNum(text));
      if (!reads) {
        plan.skipped.push_back({&def, "extension " + *def.required_extension + " version '" + text +
                                          "' is older than any this collector reads; ALTER EXTENSION " +
                                          *def.required_extension + " UPDATE"});
        continue;
      }
      if (*reads < version_num) {
        version_num = *reads;
        extension_note = " (read as of extension " + *def.required_extension + " " + text + ")";
      }
    }
    const Variant* v = def.VariantFor(version_num);
    if (!v) {
      plan.skipped.push_back(
          {&def, "no SQL variant for server_version_num " + std::to_string(version_num) + extension_note});
      continue;
    }
    plan.run.push_back({&def, v});
  }
  return plan;
}

}  // namespace pgpulse::collectors
