#include "collectors/session.h"

#include "collectors/console.h"
#include "collectors/postgres_session.h"

namespace pgpulse::collectors {

std::unique_ptr<Session> OpenSession(TargetKind kind, const std::string& conninfo, const SessionOptions& options) {
  if (kind == TargetKind::PgBouncer) return ConsoleSession::Open(conninfo);
  return PostgresSession::Open(conninfo, options);
}

}  // namespace pgpulse::collectors
