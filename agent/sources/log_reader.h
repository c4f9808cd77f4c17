#pragma once
// Incremental parsers of PostgreSQL's csvlog and jsonlog: bytes in, records
// (severity, SQLSTATE and the start of the message) out. Bounded: a record
// keeps at most kMaxFieldBytes of each field it reads, whatever its length.
//
// Threads: one parser per log file, used by one thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace pgpulse::agent::sources {

enum class LogFormat { Csv, Json };
const char* LogFormatName(LogFormat f);  // "csvlog", "jsonlog"

// What the counters need from one log record. The message is looked at, never exported.
struct LogRecord {
  std::string severity;  // ERROR, FATAL, LOG, ...; "" if the record had none
  std::string sqlstate;  // 5 characters, e.g. 57014; "" if none
  std::string message;   // its first kMaxFieldBytes bytes
};

// Bytes kept of any one field: enough for a severity, a SQLSTATE and a message's start.
inline constexpr size_t kMaxFieldBytes = 512;
// A jsonlog line longer than this is still counted, from its first kMaxJsonLineBytes bytes
// (error_severity, state_code and message come before the long fields).
inline constexpr size_t kMaxJsonLineBytes = 64 * 1024;

// Feed() takes any slice of the file; a record split across calls is completed by the next
// call, so a partial last line waits until it ends. Records without a severity, or not
// parsable, are counted in malformed() and not passed on.
class LogParser {
 public:
  using Sink = std::function<void(const LogRecord&)>;
  explicit LogParser(LogFormat format) : format_(format) {}

  void Feed(std::string_view bytes, const Sink& sink);
  // Forgets a record in progress (the file was truncated or replaced).
  void Reset();
  // Drops bytes up to and including the next newline: reading starts in the middle of a line.
  void SkipToNextLine() { skip_line_ = true; }

  LogFormat format() const { return format_; }
  uint64_t malformed() const { return malformed_; }
  // Bytes held for a record not yet complete (bounded by kMaxJsonLineBytes or 3 fields).
  size_t pending_bytes() const;

 private:
  void FeedCsv(std::string_view bytes, const Sink& sink);
  void FeedJson(std::string_view bytes, const Sink& sink);
  void EndCsvField();
  void EndCsvRecord(const Sink& sink);
  void EndJsonLine(const Sink& sink);

  LogFormat format_;
  uint64_t malformed_ = 0;
  bool skip_line_ = false;
  // csvlog: a record ends at a newline outside quotes; quoted fields may hold newlines.
  size_t csv_field_ = 0;         // index of the field being read
  bool csv_quoted_ = false;      // inside a quoted field
  bool csv_quote_seen_ = false;  // a quote inside a quoted field: either "" or the field's end
  bool csv_started_ = false;     // any byte of this record seen
  std::string csv_value_;        // the current field, if one we keep (first kMaxFieldBytes)
  LogRecord csv_record_;
  // jsonlog: one object a line.
  std::string json_line_;
  bool json_started_ = false;
};

// Parses one jsonlog object (maybe cut short at kMaxJsonLineBytes) into `out`; false if it is not one.
bool ParseJsonLogLine(std::string_view line, LogRecord& out);

}  // namespace pgpulse::agent::sources
