#pragma once
// Picks, for one server, which collectors run and with which SQL variant.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "collectors/definition.h"

namespace pgpulse::collectors {

// What the agent learned about a server in this scrape.
struct ServerFacts {
  TargetKind kind = TargetKind::Postgres;
  int version_num = 0;  // server_version_num, e.g. 150018; PgBouncer 1.18.0: 11800
  std::string version;  // server_version, e.g. "15.18 (Debian 15.18-0+deb12u1)"
  bool in_recovery = false;
  std::set<std::string> extensions;  // installed in the connected database
  // Their versions (pg_extension.extversion), e.g. {"pg_stat_statements", "1.10"}.
  std::map<std::string, std::string> extension_versions;
  std::string user;  // the role the agent connected as
  // Predefined roles (pg_*) whose privileges that role has (all of them for a superuser).
  std::set<std::string> privileges;
  bool operator==(const ServerFacts& o) const {
    return kind == o.kind && version_num == o.version_num && in_recovery == o.in_recovery &&
           extensions == o.extensions && extension_versions == o.extension_versions && user == o.user &&
           privileges == o.privileges;
  }
};

struct PlannedCollector {
  const Definition* definition;
  const Variant* variant;
};

struct SkippedCollector {
  const Definition* definition;
  std::string reason;  // shown on the landing page and by `pgpulse check --connect`
};

struct Plan {
  std::vector<PlannedCollector> run;
  std::vector<SkippedCollector> skipped;
};

// `definitions` must outlive the plan. Definitions for another kind of target
// (PostgreSQL vs PgBouncer) are left out of both lists: they were never meant
// to run there, so listing them as skipped would only be noise. A database-scoped collector's
// required extension is not checked here (`facts` describe one database);
// the caller checks it in each database the collector runs in.
Plan MakePlan(const std::vector<Definition>& definitions, const ServerFacts& facts);

}  // namespace pgpulse::collectors
