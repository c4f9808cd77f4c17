#include "collectors/filesystem.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>

namespace pgpulse::collectors {

FilesystemStat StatFilesystem(const std::string& server_path, const FilesystemAccess& access) {
  FilesystemStat out;
  if (!access.allowed) {
    out.reason = access.denied_reason;
    out.detail = access.denied_detail;
    return out;
  }
  if (server_path.empty() || server_path[0] != '/') {
    // pg_tablespace_location() is '' for pg_default and pg_global: they live in the data directory.
    out.reason = "not_found";
    out.detail = "the server reported no absolute path ('" + server_path + "')";
    return out;
  }
  std::string path = access.path_prefix + server_path;
  struct statvfs vfs {};
  struct stat st {};
  if (statvfs(path.c_str(), &vfs) != 0 || stat(path.c_str(), &st) != 0) {
    int err = errno;
    out.reason = err == EACCES ? "permission_denied" : err == ENOENT || err == ENOTDIR ? "not_found" : "error";
    out.detail = "cannot see " + path + ": " + std::strerror(err);
    return out;
  }
  const double frsize = static_cast<double>(vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize);
  out.visible = true;
  out.size_bytes = static_cast<double>(vfs.f_blocks) * frsize;
  out.free_bytes = static_cast<double>(vfs.f_bfree) * frsize;
  out.avail_bytes = static_cast<double>(vfs.f_bavail) * frsize;
  out.device = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  return out;
}

}  // namespace pgpulse::collectors
