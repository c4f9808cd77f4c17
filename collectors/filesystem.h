#pragma once
// Capacity and free space of the local filesystem holding a server-reported
// path, for definitions with a `filesystem:` key.

#include <string>

namespace pgpulse::collectors {

// Whether the agent may look at the server's paths on its own filesystem,
// decided by the caller per target (is the server on this machine, is the
// data directory really this server's?).
struct FilesystemAccess {
  bool allowed = false;
  std::string denied_reason = "not_configured";  // short code when !allowed: not_local, disabled, other_server
  std::string denied_detail = "the agent did not decide whether the server's files are on this machine";
  std::string path_prefix;  // prepended to every server path (the volume mounted elsewhere, e.g. /host)
};

// The added result columns, in this order.
inline constexpr const char* kFilesystemColumns[] = {"fs_size_bytes", "fs_free_bytes", "fs_avail_bytes",
                                                     "fs_visible",    "fs_reason",     "fs_device"};

struct FilesystemStat {
  bool visible = false;
  std::string reason;      // "" when visible; else a short code: permission_denied, not_found, error, or the access's
  std::string detail;      // for people: the path and the system error
  double size_bytes = 0;   // f_blocks * f_frsize (df's Size)
  double free_bytes = 0;   // f_bfree * f_frsize (free including root's reserve)
  double avail_bytes = 0;  // f_bavail * f_frsize (df's Avail: what PostgreSQL, not root, can use)
  std::string device;      // "major:minor" of the filesystem (st_dev), to tell shared filesystems apart
};

// statvfs() and stat() of access.path_prefix + server_path. Never throws.
FilesystemStat StatFilesystem(const std::string& server_path, const FilesystemAccess& access);

}  // namespace pgpulse::collectors
