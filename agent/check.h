#pragma once
// `pgpulse check`: validate config and definitions offline, optionally run
// every collector once against each target and print a table.

#include <iosfwd>

#include "agent/runtime.h"

namespace pgpulse::agent {

// Returns the process exit status: 0 when everything is valid (and, with
// `connect`, every target is up and no collector failed), 1 otherwise.
int RunCheck(const AgentOptions& options, bool connect, std::ostream& out, std::ostream& err);

}  // namespace pgpulse::agent
