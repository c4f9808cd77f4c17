#include "agent/sources/filesystem_access.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "agent/log.h"
#include "collectors/text.h"

namespace pgpulse::agent::sources {

std::optional<std::string> OtherServersDataDirectory(const std::string& path_prefix,
                                                     const collectors::ServerLocation& server) {
  // postmaster.pid: line 3 is the start time (Unix seconds), line 4 the port.
  const std::string data_dir = path_prefix + server.data_directory;
  const std::string pid_path = data_dir + "/postmaster.pid";
  std::ifstream pid(pid_path);
  if (pid) {
    std::string lines[4];
    for (auto& l : lines) std::getline(pid, l);
    long long pid_started = std::atoll(lines[2].c_str());
    // The server notes its start time after writing postmaster.pid; they differ by the startup's duration.
    if (lines[3] != server.port || std::llabs(pid_started - server.started) > 60)
      return pid_path + " belongs to another server (port " + lines[3] + ", started at " + lines[2] +
             "; this server: port " + server.port + ", started at " + std::to_string(server.started) + ")";
  } else if (errno == ENOENT) {
    struct stat st {};
    if (stat(data_dir.c_str(), &st) == 0)
      return data_dir + " has no postmaster.pid, so it is not this running server's data directory";
  }
  // Otherwise (unreadable pid file, missing directory) each path reports what statvfs says.
  return std::nullopt;
}

collectors::FilesystemAccess FilesystemAccessFor(const TargetConfig& target,
                                                 const std::function<collectors::ServerLocation()>& locate) {
  collectors::FilesystemAccess access;
  access.path_prefix = target.filesystem.path_prefix;
  const std::string key = "targets[" + target.name + "].filesystem.visible";
  auto deny = [&](const char* reason, const std::string& detail) {
    access.denied_reason = reason;
    access.denied_detail = "filesystem not looked at: " + detail;
    return access;
  };
  if (target.filesystem.mode == FilesystemVisibility::Mode::No) return deny("disabled", key + " is no");
  try {
    const collectors::ServerLocation server = locate();
    if (!server.local && target.filesystem.mode == FilesystemVisibility::Mode::Auto)
      return deny("not_local", "the server is reached at " + server.address +
                                   ", not a Unix socket or loopback address (set " + key +
                                   ": yes if its volume is mounted here)");
    if (auto other = OtherServersDataDirectory(access.path_prefix, server)) return deny("other_server", *other);
    access.allowed = true;
    return access;
  } catch (const collectors::SessionLost&) {
    throw;
  } catch (const std::exception& e) {
    return deny("error", "cannot read the server's data directory: " + Redact(collectors::OneLine(e.what())));
  }
}

}  // namespace pgpulse::agent::sources
