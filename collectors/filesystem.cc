#include "collectors/filesystem.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

namespace pgpulse::collectors {

namespace {

// statvfs() on a hung network filesystem never returns; it runs on a thread of
// its own so the collection goes on. A path whose call is still stuck is not
// tried again until that call returns: one stuck thread per path at most.
constexpr std::chrono::milliseconds kStatTimeout{1000};

// Paths whose statvfs() overran kStatTimeout and has not returned yet.
// Never destroyed: a stuck thread may outlive main().
struct Stuck {
  std::mutex mu;
  std::set<std::string> paths;  // guarded by mu
};
Stuck& stuck = *new Stuck;

struct RawStat {
  int error = 0;
  struct statvfs vfs {};
  struct stat st {};
};

RawStat StatNow(const std::string& path) {
  RawStat raw;
  if (statvfs(path.c_str(), &raw.vfs) != 0 || stat(path.c_str(), &raw.st) != 0) raw.error = errno;
  return raw;
}

}  // namespace

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
  {
    std::lock_guard<std::mutex> lock(stuck.mu);
    if (stuck.paths.count(path)) {
      out.reason = "error";
      out.detail = "cannot see " + path + ": an earlier statvfs() on it has not returned (hung network filesystem?)";
      return out;
    }
  }
  auto done = std::make_shared<std::promise<RawStat>>();
  std::future<RawStat> result = done->get_future();
  std::thread([done, path] {
    done->set_value(StatNow(path));
    std::lock_guard<std::mutex> lock(stuck.mu);
    stuck.paths.erase(path);
  }).detach();
  bool overran = false;
  if (result.wait_for(kStatTimeout) != std::future_status::ready) {
    // Checked again under the lock: a call finishing now erases the mark right after.
    std::lock_guard<std::mutex> lock(stuck.mu);
    overran = result.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
    if (overran) stuck.paths.insert(path);
  }
  if (overran) {
    out.reason = "error";
    out.detail = "cannot see " + path + ": statvfs() did not return within 1s (hung network filesystem?)";
    return out;
  }
  const RawStat raw = result.get();
  const struct statvfs& vfs = raw.vfs;
  const struct stat& st = raw.st;
  if (raw.error != 0) {
    int err = raw.error;
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
