#pragma once
// What one collection of a target produced: per collector (and database) an
// outcome, and whether the server was up. Read by the renderers in runtime.cc.

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "collectors/family.h"
#include "collectors/plan.h"

namespace pgpulse::agent {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Pending: a collector with a ttl whose first run had not finished when the scrape had to
// answer; it goes on in the background and is served from the next scrape on. Never a failure.
enum class CollectorStatus { Ok, Cached, Failed, Skipped, Pending };
const char* StatusName(CollectorStatus s);

struct CollectorOutcome {
  std::string name;
  std::string database;  // for database-scoped collectors: where it ran
  CollectorStatus status = CollectorStatus::Failed;
  std::string detail;  // the error, or why it was skipped
  double duration_seconds = 0;
  size_t series = 0;
  std::shared_ptr<const std::vector<collectors::Family>> families;
  // When the query that produced `families` finished (a cached result keeps its own time);
  // the epoch when it did not run.
  std::chrono::system_clock::time_point collected_at{};
};

struct Collection {
  bool up = false;
  std::string error;  // why the server is counted down
  bool deadline_exceeded = false;
  // The scrape's deadline came before the collection finished: what was done by then, the rest
  // from the collection before (with its age) or pending.
  bool partial = false;
  collectors::ServerFacts facts;
  std::vector<CollectorOutcome> collectors;
  double duration_seconds = 0;
  std::chrono::system_clock::time_point finished;
};

}  // namespace pgpulse::agent
