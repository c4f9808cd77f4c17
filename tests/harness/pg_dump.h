// pg_dump and pg_restore for tests of dump files: Debian's client programs of the server's own major version.
#pragma once

#include <string>
#include <vector>

#include "tests/harness/agent_process.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {

// /usr/lib/postgresql/<server's major>/bin/<name>; "" when that is not installed (a major from tests/pg-majors.sh's
// cache without Debian's client package).
std::string PgClientProgram(const PostgresServer& pg, const std::string& name);

// pg_dump of the server's postgres database into `file` with `options` (e.g. --format=custom). Throws
// std::runtime_error with pg_dump's output if it fails or is not installed.
void PgDump(const PostgresServer& pg, const std::string& file, const std::vector<std::string>& options);

}  // namespace pgpulse::testing
