#pragma once
// A source of metrics that is not SQL (a tool's report, files on disk): the
// interface a target runs beside its SQL collectors, and the list of them.
//
// Adding a source: a file in agent/sources/ that implements Source (with its
// access check beside it, and its metrics declared in a
// collectors::DeclaredSource like BackrestSource()), and one line in MakeSources.
//
// Threads: the target's worker thread calls Start and Collect; a source may
// run slow work on a thread of its own between the two.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/collection.h"
#include "agent/config.h"
#include "agent/deadline.h"
#include "collectors/filesystem.h"
#include "collectors/plan.h"
#include "collectors/session.h"

namespace pgpulse::agent::sources {

// What a source may know about the target in this collection.
struct SourceContext {
  const TargetConfig& target;
  const Labels& labels;                            // the target's, on every sample
  const collectors::ServerFacts* facts = nullptr;  // nullptr when the server is down
  // Whether the agent may look at the server's files (see filesystem_access.h); asks the
  // server on first use in a collection.
  std::function<const collectors::FilesystemAccess&()> filesystem;
  // Where the server keeps its files (data directory, port, start time); asks the server on
  // first use in a collection. nullptr when it cannot say (down, a PgBouncer console, an error).
  std::function<const collectors::ServerLocation*()> location;
};

struct SourceOutcome {
  CollectorOutcome outcome;  // status Ok (fresh), Cached (seen before) or Failed
  bool ran = false;          // a fresh run's result (counts as a run in the agent's metrics)
  bool report = true;        // false: nothing to report in this collection (no row, no metrics)
};

class Source {
 public:
  virtual ~Source() = default;
  // Called when a collection starts, before the SQL collectors.
  virtual void Start() {}
  // This collection's result; waits at most until `until`.
  virtual SourceOutcome Collect(const SourceContext& context, Clock::time_point until) = 0;
};

// Every source `target` configures, in the order they are reported.
std::vector<std::unique_ptr<Source>> MakeSources(const TargetConfig& target, const Labels& labels);

}  // namespace pgpulse::agent::sources
