#pragma once
// Passwords that rotate: a target's password_file is read again, or its password_command run
// again, for every new connection, so a rotated secret (a Kubernetes Secret, a Vault agent file,
// an RDS or Cloud SQL IAM token) needs no reload. A connection the server refuses for its
// password is retried once with a password read again.
//
// Thread-safe: any thread may call these (each target's worker does, for its own connections).

#include <stdexcept>
#include <string>
#include <utility>

#include "agent/config.h"

namespace pgpulse::agent {

// Why a password could not be read; the text names the file or command, never the password.
class CredentialError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Whether the target's password comes from a file or a command (and so may have rotated).
bool HasRotatingPassword(const TargetConfig& config);

// `conninfo` (a complete key=value string) with the password read now from the target's
// password_command or password_file; unchanged when the target has neither. The password is
// registered with the log's redaction (log.h) before it is returned. Throws CredentialError.
std::string ConninfoForNewConnection(const TargetConfig& config, const std::string& conninfo);

// Whether a connection error says the server refused the credentials (SQLSTATE 28P01: libpq's
// text "password authentication failed", or "PAM authentication failed" for RDS IAM).
bool IsAuthenticationFailure(const std::string& error_text);

// Whether a failed connect deserves one more try with a password read again: the target reads it
// from a file or command and the server refused it. Logs the retry.
bool RetryAfterAuthenticationFailure(const TargetConfig& config, const std::string& error_text);

// Opens a connection with open(ConninfoForNewConnection(config, conninfo)); when the server
// refuses the password and it comes from a file or command, reads it again and tries once more.
// Returns what `open` returns; throws what it throws, or CredentialError.
template <class Open>
auto ConnectWithCurrentPassword(const TargetConfig& config, const std::string& conninfo, Open open) {
  try {
    return open(ConninfoForNewConnection(config, conninfo));
  } catch (const CredentialError&) {
    throw;
  } catch (const std::exception& e) {
    if (!RetryAfterAuthenticationFailure(config, e.what())) throw;
  }
  return open(ConninfoForNewConnection(config, conninfo));
}

}  // namespace pgpulse::agent
