#pragma once
// Connection strings: parsed with libpq's own parser, completed with the
// agent's settings, and described without secrets.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "collectors/duration.h"

namespace pgpulse::agent {

struct ConnectionSpec {
  std::string conninfo;  // complete libpq key=value string; holds the password: never log it
  std::string display;   // host, port, dbname and user only: safe for logs and pages
  std::string password;  // empty when none was given (libpq may still use PGPASSFILE)
  std::vector<std::pair<std::string, std::string>> options;  // what conninfo is built from

  // The same connection settings for another database of the server.
  std::string ConninfoFor(const std::string& dbname) const;
};

// `dsn` is a URI or key=value string ("" means libpq's defaults: PGHOST,
// PGPORT, PGUSER, PGDATABASE, PGPASSFILE, the local socket). `password`, when
// not empty, replaces any password in the DSN. The agent always sets
// application_name=pgpulse and, unless the DSN sets them, connect_timeout and
// TCP keepalives so a dead server is noticed. On error returns nullopt and
// sets `error` to a message that never repeats the DSN's text.
std::optional<ConnectionSpec> ParseDsn(const std::string& dsn, const std::string& password,
                                       collectors::Millis connect_timeout, std::string& error);

// A key=value connection string with every value quoted for libpq.
std::string BuildConninfo(const std::vector<std::pair<std::string, std::string>>& options);

// Reads a password file: its first line, without the line end.
std::optional<std::string> ReadPasswordFile(const std::string& path, std::string& error);

}  // namespace pgpulse::agent
