#pragma once
// `pgpulse check`: validate config and definitions offline, optionally run
// every collector once against each target and print a table.

#include <iosfwd>
#include <string>
#include <vector>

#include "agent/runtime.h"

namespace pgpulse::agent {

// Returns the process exit status: 0 when everything is valid (and, with
// `connect`, every target is up and no collector failed), 1 otherwise.
// Definitions whose SQL changes the server or the session (pg_terminate_backend, advisory
// locks, COPY PROGRAM, SET ROLE, ...), one "origin: what" line each; check prints them.
std::vector<std::string> SideEffectWarnings(const Definitions& defs);

int RunCheck(const AgentOptions& options, bool connect, std::ostream& out, std::ostream& err);

}  // namespace pgpulse::agent
