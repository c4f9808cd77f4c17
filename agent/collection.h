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

enum class CollectorStatus { Ok, Cached, Failed, Skipped };
const char* StatusName(CollectorStatus s);

struct CollectorOutcome {
  std::string name;
  std::string database;  // for database-scoped collectors: where it ran
  CollectorStatus status = CollectorStatus::Failed;
  std::string detail;  // the error, or why it was skipped
  double duration_seconds = 0;
  size_t series = 0;
  std::shared_ptr<const std::vector<collectors::Family>> families;
};

struct Collection {
  bool up = false;
  std::string error;  // why the server is counted down
  bool deadline_exceeded = false;
  collectors::ServerFacts facts;
  std::vector<CollectorOutcome> collectors;
  double duration_seconds = 0;
  std::chrono::system_clock::time_point finished;
};

}  // namespace pgpulse::agent
