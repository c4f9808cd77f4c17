#pragma once
// Whether the agent may look at a server's files on its own filesystem: the
// one visibility rule for every source that reads them (disk space through
// the disk collector, and sources that read files).

#include <functional>
#include <optional>
#include <string>

#include "agent/config.h"
#include "collectors/filesystem.h"
#include "collectors/session.h"

namespace pgpulse::agent::sources {

// Decides for `target` (its filesystem section): never with visible: no; with auto only when the
// server is reached over a Unix socket or loopback; and only when the data directory's
// postmaster.pid belongs to the running server. `locate` asks the server where it is, only when
// needed; collectors::SessionLost from it passes through, other errors deny access ("error").
collectors::FilesystemAccess FilesystemAccessFor(const TargetConfig& target,
                                                 const std::function<collectors::ServerLocation()>& locate);

// Whether `data_directory` (with the access's path prefix) is the running server's: its
// postmaster.pid names the server's port and start time. nullopt when it is; else why not.
std::optional<std::string> OtherServersDataDirectory(const std::string& path_prefix,
                                                     const collectors::ServerLocation& server);

}  // namespace pgpulse::agent::sources
