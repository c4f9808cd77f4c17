#include "agent/sources/logs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "collectors/text.h"

namespace pgpulse::agent::sources {

using collectors::OneLine;

namespace {

using Clock = std::chrono::steady_clock;

// What each named counter counts. The SQLSTATE decides, except for statement timeouts: 57014 is
// also a cancel by pg_cancel_backend() or Ctrl-C, told apart only by the (English) message.
struct Kind {
  const char* name;  // pg_log_<name>_total
  const char* help;
};
constexpr Kind kKinds[] = {
    {"statement_timeouts",
     "Statements canceled by statement_timeout (SQLSTATE 57014, \"canceling statement due to statement timeout\"; "
     "needs lc_messages in English) logged since the agent started reading the log."},
    {"deadlocks",
     "Transactions aborted by deadlock detection (SQLSTATE 40P01) logged since the agent started reading."},
    {"authentication_failures",
     "Failed authentications (SQLSTATE 28P01 invalid password, 28000 e.g. no pg_hba.conf entry) logged since the agent "
     "started reading."},
    {"out_of_memory_errors", "Out of memory errors (SQLSTATE 53200) logged since the agent started reading."},
    {"serialization_failures",
     "Serialization failures (SQLSTATE 40001), which the client must retry, logged since the agent started reading."},
    {"disk_full_errors",
     "Disk full errors (SQLSTATE 53100, or a message saying \"No space left on device\", e.g. \"could not write\") "
     "logged since the agent started reading."},
};

constexpr const char* kSeverities[] = {"DEBUG", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC"};

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The SQLSTATE's class (its first two characters), or "" when the record has no valid one.
std::string ClassOf(const std::string& sqlstate) {
  if (sqlstate.size() != 5) return "";
  for (char c : sqlstate) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) return "";
  }
  return sqlstate.substr(0, 2);
}

std::string ErrnoReason(int err) {
  return err == EACCES || err == EPERM ? "permission_denied" : err == ENOENT || err == ENOTDIR ? "not_found" : "error";
}

// `current_logfiles` in the data directory: one "format path" a line; the path is relative to the
// data directory unless absolute. The file for `format`, or "".
std::string CurrentLogfile(const std::string& contents, const char* format) {
  size_t at = 0;
  while (at < contents.size()) {
    size_t nl = contents.find('\n', at);
    std::string line = contents.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    at = nl == std::string::npos ? contents.size() : nl + 1;
    size_t space = line.find(' ');
    if (space != std::string::npos && line.compare(0, space, format) == 0) return line.substr(space + 1);
  }
  return "";
}

}  // namespace

const collectors::DeclaredSource& LogsSource() {
  static const collectors::DeclaredSource source = [] {
    collectors::DeclaredSource s{
        "logs",
        "Not a SQL collector: where the server's log is visible to the agent (the filesystem's rule: a Unix socket or "
        "loopback address and a matching postmaster.pid, or `targets[].filesystem.visible: yes`), "
        "`logging_collector` is on and `log_destination` has `jsonlog` (15+) or `csvlog`, the agent reads the "
        "current file (`current_logfiles`, or `pg_current_logfile()` where that file is out of reach) as it grows, at "
        "most `targets[].logs.max_read_bytes` per collection, and "
        "counts its records. Counting starts at the end of the file when the agent first sees it: history is not "
        "counted, and counters start again from 0 when the agent restarts or a reload rebuilds the target. Message "
        "text is never exported. Every sample also has the target's labels.",
        {
            {"pg_log_visible", "gauge", "format, reason", "-",
             "1 if the agent reads the server's log (format: jsonlog or csvlog), 0 if not; reason says why not: "
             "disabled, not_local, other_server, no_logging_collector, no_csvlog_or_jsonlog, not_found, "
             "permission_denied, error."},
            {"pg_log_messages_total", "counter", "severity, sqlstate_class", "-",
             "Log records by severity (LOG, WARNING, ERROR, FATAL, PANIC, ...; other) and SQLSTATE class (first two "
             "characters, e.g. 57 operator intervention, 28 invalid authorization; \"\" if none) since the agent "
             "started reading."},
        }};
    for (const Kind& k : kKinds)
      s.metrics.push_back({std::string("pg_log_") + k.name + "_total", "counter", "-", "-", k.help});
    s.metrics.push_back({"pg_log_read_bytes_total", "counter", "-", "bytes", "Bytes of the log the agent has read."});
    s.metrics.push_back({"pg_log_unread_bytes", "gauge", "-", "bytes",
                         "Bytes of the current log file not read yet (more than max_read_bytes was added since the "
                         "last collection); stays above 0 when the agent cannot keep up."});
    s.metrics.push_back({"pg_log_rotations_total", "counter", "-", "-",
                         "Times the agent moved to a new current log file (rotation, server restart)."});
    s.metrics.push_back({"pg_log_truncations_total", "counter", "-", "-",
                         "Times the log file was found shorter than already read and was read again from its start."});
    s.metrics.push_back({"pg_log_malformed_records_total", "counter", "-", "-",
                         "Lines or records of the log that could not be parsed as csvlog or jsonlog, not counted."});
    return s;
  }();
  return source;
}

std::vector<const char*> KindsOf(const LogRecord& r) {
  std::vector<const char*> out;
  const std::string& s = r.sqlstate;
  if (s == "57014" && StartsWith(r.message, "canceling statement due to statement timeout"))
    out.push_back("statement_timeouts");
  if (s == "40P01") out.push_back("deadlocks");
  if (s == "28P01" || s == "28000") out.push_back("authentication_failures");
  if (s == "53200") out.push_back("out_of_memory_errors");
  if (s == "40001") out.push_back("serialization_failures");
  if (s == "53100" || r.message.find("No space left on device") != std::string::npos) out.push_back("disk_full_errors");
  return out;
}

void LogCounts::Add(const LogRecord& r) {
  if (kinds_.empty()) {
    for (const Kind& k : kKinds) kinds_[k.name] = 0;
  }
  std::string severity = "other";
  for (const char* known : kSeverities) {
    if (r.severity == known) severity = known;
  }
  std::pair<std::string, std::string> key{severity, ClassOf(r.sqlstate)};
  if (!messages_.count(key) && messages_.size() >= kMaxSeries) key.second = "other";
  ++messages_[key];
  for (const char* kind : KindsOf(r)) ++kinds_[kind];
}

LogTail::~LogTail() { Close(); }

void LogTail::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (parser_) malformed_ += parser_->malformed();
  parser_.reset();
}

void LogTail::Open(int fd, const std::string& path, LogFormat format, off_t offset, dev_t dev, ino_t ino) {
  Close();
  fd_ = fd;
  path_ = path;
  dev_ = dev;
  ino_ = ino;
  offset_ = offset;
  parser_ = std::make_unique<LogParser>(format);
}

long long LogTail::ReadUpTo(off_t size, size_t max_bytes, LogCounts& counts) {
  char buf[64 * 1024];
  long long total = 0;
  auto add = [&counts](const LogRecord& r) { counts.Add(r); };
  while (offset_ < size && static_cast<size_t>(total) < max_bytes) {
    size_t want = std::min<size_t>({sizeof buf, static_cast<size_t>(size - offset_), max_bytes - total});
    ssize_t n = ::pread(fd_, buf, want, offset_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    parser_->Feed(std::string_view(buf, static_cast<size_t>(n)), add);
    offset_ += n;
    total += n;
  }
  read_bytes_ += static_cast<uint64_t>(total);
  return total;
}

LogTail::Step LogTail::Read(const std::string& path, LogFormat format, size_t max_bytes, LogCounts& counts) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return {ErrnoReason(err), "cannot see the log file " + path + ": " + std::strerror(err)};
  }
  const bool first = fd_ < 0;
  const bool same_file = !first && st.st_dev == dev_ && st.st_ino == ino_ && parser_->format() == format;
  if (!first && !same_file) {
    // Rotated (or replaced): what the old file gained since the last read comes first.
    struct stat old {};
    if (::fstat(fd_, &old) == 0 && offset_ < old.st_size) {
      long long n = ReadUpTo(old.st_size, max_bytes, counts);
      if (n >= 0 && offset_ < old.st_size) {  // the budget ran out: the rest next time
        unread_bytes_ = static_cast<uint64_t>(old.st_size - offset_ + st.st_size);
        return {};
      }
      max_bytes -= static_cast<size_t>(std::max(0LL, n));
    }
  }
  if (first || !same_file) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      return {ErrnoReason(err), "cannot open the log file " + path + ": " + std::strerror(err)};
    }
    struct stat now {};
    ::fstat(fd, &now);
    const bool format_changed = !first && parser_->format() != format;
    // The first file is read from its end (history is not counted); a later one is new: from its start.
    Open(fd, path, format, first || format_changed ? now.st_size : 0, now.st_dev, now.st_ino);
    // Starting at the end of a line the server is still writing: its rest is no record of its own.
    char last = '\n';
    if (offset_ > 0 && ::pread(fd_, &last, 1, offset_ - 1) == 1 && last != '\n') parser_->SkipToNextLine();
    if (!first && !format_changed) ++rotations_;
    st = now;
  } else if (st.st_size < offset_) {
    ++truncations_;
    offset_ = 0;
    parser_->Reset();
  }
  if (ReadUpTo(st.st_size, max_bytes, counts) < 0) {
    int err = errno;
    return {"error", "cannot read the log file " + path + ": " + std::strerror(err)};
  }
  unread_bytes_ = static_cast<uint64_t>(std::max<off_t>(0, st.st_size - offset_));
  return {};
}

LogTail::Step LogSource::CurrentLogfiles(const collectors::ServerLocation& where, const std::string& list_path,
                                         bool json, std::string& contents) {
  std::ifstream in(list_path);
  if (in) {
    contents.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return {};
  }
  const int err = errno;
  const std::string unreadable = "cannot read " + list_path + ": " + std::strerror(err);
  if (err != EACCES && err != EPERM) return {ErrnoReason(err), "log not read: " + unreadable};
  // The data directory is the server's OS user's (0700), but log_directory may be elsewhere and readable:
  // the server says which file it writes, if this role may ask (superuser, or GRANTed EXECUTE).
  if (!where.may_ask_logfile)
    return {"permission_denied",
            "log not read: " + unreadable +
                ", and this role may not call pg_current_logfile() (GRANT EXECUTE ON FUNCTION "
                "pg_current_logfile(text) to the agent's role, or let it read the data directory)"};
  const bool use_json = json && !where.current_jsonlog.empty();
  const std::string& file = use_json ? where.current_jsonlog : where.current_csvlog;
  contents = file.empty() ? "" : std::string(use_json ? "jsonlog " : "csvlog ") + file + "\n";
  return {};
}

LogTail::Step LogSource::Follow(const collectors::ServerLocation& where, const collectors::FilesystemAccess& access) {
  if (!where.logging_collector)
    return {"no_logging_collector", "log not read: logging_collector is off, so the server writes no log files"};
  const std::string& destination = where.log_destination;
  const std::string& data_dir = where.data_directory;
  const bool json = destination.find("jsonlog") != std::string::npos;
  if (!json && destination.find("csvlog") == std::string::npos)
    return {"no_csvlog_or_jsonlog", "log not read: log_destination is '" + destination +
                                        "'; add jsonlog (PostgreSQL 15+) or csvlog to count errors by kind"};
  const std::string list_path = access.path_prefix + data_dir + "/current_logfiles";
  std::string contents;
  if (LogTail::Step step = CurrentLogfiles(where, list_path, json, contents); !step.reason.empty()) return step;
  LogFormat format = LogFormat::Json;
  std::string file = json ? CurrentLogfile(contents, "jsonlog") : "";
  if (file.empty()) {
    format = LogFormat::Csv;
    file = CurrentLogfile(contents, "csvlog");
  }
  if (file.empty()) return {"not_found", "log not read: the server names no jsonlog or csvlog file (yet)"};
  const std::string path = access.path_prefix + (file[0] == '/' ? file : data_dir + "/" + file);
  LogTail::Step step = tail_.Read(path, format, config_.max_read_bytes, counts_);
  if (step.reason.empty()) {
    format_ = LogFormatName(format);
    seen_ = true;
  }
  return step;
}

SourceOutcome LogSource::Collect(const SourceContext& context, Clock::time_point) {
  SourceOutcome result;
  // Only a PostgreSQL server that answers says where its log is; a down server or a PgBouncer
  // console reports no logs row at all.
  if (!context.facts || context.facts->kind != collectors::TargetKind::Postgres) {
    result.report = false;
    return result;
  }
  const auto start = Clock::now();
  LogTail::Step step;
  if (!config_.enabled) {
    step = {"disabled", "log not read: logs.enabled is false"};
  } else {
    const collectors::FilesystemAccess& fs = context.filesystem();
    const collectors::ServerLocation* where = fs.allowed ? context.location() : nullptr;
    if (!fs.allowed) {
      step.reason = fs.denied_reason;
      step.detail = fs.denied_detail;
      const std::string prefix = "filesystem not looked at";
      if (StartsWith(step.detail, prefix.c_str())) step.detail = "log not read" + step.detail.substr(prefix.size());
    } else if (!where) {
      step = {"error", "log not read: the server did not say where its log is"};
    } else {
      try {
        step = Follow(*where, fs);
      } catch (const std::exception& e) {
        step = {"error", "log not read: " + OneLine(e.what())};
      }
    }
  }
  CollectorOutcome& out = result.outcome;
  out.name = kName;
  out.status = step.reason.empty() ? CollectorStatus::Ok : CollectorStatus::Skipped;
  result.ran = step.reason.empty();
  out.detail = step.detail;
  auto families = Families(step);
  for (const auto& f : families) out.series += f.size();
  out.families = std::make_shared<const std::vector<collectors::Family>>(std::move(families));
  out.duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

std::vector<collectors::Family> LogSource::Families(const LogTail::Step& step) const {
  std::vector<collectors::Family> out;
  out.reserve(16);  // family() hands out references into it
  auto family = [&](const std::string& name, collectors::MetricKind kind) -> collectors::Family& {
    collectors::Family f;
    f.name = name;
    f.kind = kind;
    for (const collectors::DeclaredMetric& m : LogsSource().metrics) {
      if (m.name == name) f.help = m.help;
    }
    if (f.help.empty()) throw std::logic_error("log metric " + name + " is not declared in LogsSource()");
    out.push_back(std::move(f));
    return out.back();
  };
  auto with = [&](Labels extra) {
    Labels l = labels_;
    l.insert(l.end(), extra.begin(), extra.end());
    return collectors::RenderLabels(l);
  };
  family("pg_log_visible", collectors::MetricKind::Gauge)
      .Add(with({{"format", step.reason.empty() ? format_ : ""}, {"reason", step.reason}}), step.reason.empty());
  if (!seen_) return out;
  collectors::Family& messages = family("pg_log_messages_total", collectors::MetricKind::Counter);
  for (const auto& [key, n] : counts_.messages())
    messages.Add(with({{"severity", key.first}, {"sqlstate_class", key.second}}), static_cast<double>(n));
  for (const Kind& k : kKinds) {
    auto it = counts_.kinds().find(k.name);
    family(std::string("pg_log_") + k.name + "_total", collectors::MetricKind::Counter)
        .Add(with({}), it == counts_.kinds().end() ? 0 : static_cast<double>(it->second));
  }
  const std::pair<const char*, uint64_t> totals[] = {{"pg_log_read_bytes_total", tail_.read_bytes()},
                                                     {"pg_log_rotations_total", tail_.rotations()},
                                                     {"pg_log_truncations_total", tail_.truncations()},
                                                     {"pg_log_malformed_records_total", tail_.malformed()}};
  for (const auto& [name, n] : totals)
    family(name, collectors::MetricKind::Counter).Add(with({}), static_cast<double>(n));
  family("pg_log_unread_bytes", collectors::MetricKind::Gauge).Add(with({}), static_cast<double>(tail_.unread_bytes()));
  return out;
}

}  // namespace pgpulse::agent::sources
