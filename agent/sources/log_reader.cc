#include "agent/sources/log_reader.h"

namespace pgpulse::agent::sources {

namespace {

// csvlog columns (0-based), the same from PostgreSQL 9.0 to 17: later versions only append columns.
constexpr size_t kCsvSeverity = 11, kCsvSqlstate = 12, kCsvMessage = 13;

// A cursor over one jsonlog line that never reads past its end.
class JsonScanner {
 public:
  explicit JsonScanner(std::string_view s) : s_(s) {}
  bool AtEnd() {
    SkipSpace();
    return i_ >= s_.size();
  }
  bool Take(char c) {
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  // A string, decoded; keeps at most kMaxFieldBytes. False if there is none or it is cut short.
  bool String(std::string& out) {
    out.clear();
    if (!Take('"')) return false;
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (c == '\\') {
        if (i_ >= s_.size()) return false;
        c = Unescape(s_[i_++]);
        if (c == 0) return false;
      }
      if (out.size() < kMaxFieldBytes) out.push_back(c);
    }
    return false;
  }
  // Skips a value that is not a string (number, true, false, null, or a nested object or array).
  bool SkipValue() {
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == '"') {
      std::string ignored;
      return String(ignored);
    }
    int depth = 0;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == '"') {
        std::string ignored;
        if (!String(ignored)) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (depth == 0) return true;
        --depth;
      }
      if (c == ',' && depth == 0) return true;
      ++i_;
    }
    return false;
  }

 private:
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  // The character an escape stands for; \uXXXX becomes '?' (the fields we read are ASCII). 0: invalid.
  char Unescape(char e) {
    switch (e) {
      case '"': return '"';
      case '\\': return '\\';
      case '/': return '/';
      case 'b': return '\b';
      case 'f': return '\f';
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case 'u':
        if (s_.size() - i_ < 4) return 0;
        i_ += 4;
        return '?';
    }
    return 0;
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

const char* LogFormatName(LogFormat f) { return f == LogFormat::Json ? "jsonlog" : "csvlog"; }

bool ParseJsonLogLine(std::string_view line, LogRecord& out) {
  out = LogRecord{};
  JsonScanner js(line);
  if (!js.Take('{')) return false;
  std::string key, value;
  for (bool first = true;; first = false) {
    if (js.AtEnd()) return !out.severity.empty();  // cut short at kMaxJsonLineBytes
    if (js.Take('}')) return js.AtEnd();
    if (!first && !js.Take(',')) return false;
    if (!js.String(key) || !js.Take(':')) return js.AtEnd() && !out.severity.empty();
    std::string* into = key == "error_severity" ? &out.severity
                        : key == "state_code"   ? &out.sqlstate
                        : key == "message"      ? &out.message
                                                : nullptr;
    bool ok = into ? js.String(*into) : js.SkipValue();
    // jsonlog leaves state_code out when it is 00000 (successful completion), as on most LOG records.
    if (ok && into == &out.severity && out.sqlstate.empty()) out.sqlstate = "00000";
    if (!ok) return js.AtEnd() && !out.severity.empty();
  }
}

void LogParser::Feed(std::string_view bytes, const Sink& sink) {
  if (skip_line_) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) return;
    bytes.remove_prefix(nl + 1);
    skip_line_ = false;
  }
  if (format_ == LogFormat::Csv) FeedCsv(bytes, sink);
  else FeedJson(bytes, sink);
}

void LogParser::Reset() {
  csv_field_ = 0;
  csv_quoted_ = csv_quote_seen_ = csv_started_ = false;
  csv_value_.clear();
  csv_record_ = LogRecord{};
  json_line_.clear();
  json_started_ = false;
  skip_line_ = false;
}

size_t LogParser::pending_bytes() const {
  return csv_value_.size() + csv_record_.severity.size() + csv_record_.sqlstate.size() + csv_record_.message.size() +
         json_line_.size();
}

void LogParser::FeedJson(std::string_view bytes, const Sink& sink) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view part = bytes.substr(0, nl);
    if (!part.empty()) json_started_ = true;
    if (json_line_.size() < kMaxJsonLineBytes) json_line_.append(part.substr(0, kMaxJsonLineBytes - json_line_.size()));
    if (nl == std::string_view::npos) return;
    EndJsonLine(sink);
    bytes.remove_prefix(nl + 1);
  }
}

void LogParser::EndJsonLine(const Sink& sink) {
  if (json_started_) {
    LogRecord r;
    if (ParseJsonLogLine(json_line_, r) && !r.severity.empty()) sink(r);
    else ++malformed_;
  }
  json_line_.clear();
  json_started_ = false;
}

void LogParser::FeedCsv(std::string_view bytes, const Sink& sink) {
  for (char c : bytes) {
    if (c != '\n') csv_started_ = true;
    if (csv_quoted_) {
      if (!csv_quote_seen_) {
        if (c == '"') csv_quote_seen_ = true;
        else if (csv_field_ >= kCsvSeverity && csv_field_ <= kCsvMessage && csv_value_.size() < kMaxFieldBytes)
          csv_value_.push_back(c);
        continue;
      }
      csv_quote_seen_ = false;
      if (c == '"') {  // "" inside a quoted field is one quote
        if (csv_field_ >= kCsvSeverity && csv_field_ <= kCsvMessage && csv_value_.size() < kMaxFieldBytes)
          csv_value_.push_back(c);
        continue;
      }
      csv_quoted_ = false;  // that quote closed the field; `c` follows it
    }
    if (c == '"') {
      csv_quoted_ = true;
    } else if (c == ',') {
      EndCsvField();
    } else if (c == '\n') {
      EndCsvField();
      EndCsvRecord(sink);
    } else if (c != '\r' && csv_field_ >= kCsvSeverity && csv_field_ <= kCsvMessage &&
               csv_value_.size() < kMaxFieldBytes) {
      csv_value_.push_back(c);
    }
  }
}

void LogParser::EndCsvField() {
  if (csv_field_ == kCsvSeverity) csv_record_.severity = std::move(csv_value_);
  else if (csv_field_ == kCsvSqlstate) csv_record_.sqlstate = std::move(csv_value_);
  else if (csv_field_ == kCsvMessage) csv_record_.message = std::move(csv_value_);
  csv_value_.clear();
  ++csv_field_;
}

void LogParser::EndCsvRecord(const Sink& sink) {
  if (csv_started_) {  // an empty line is no record
    if (csv_field_ > kCsvMessage && !csv_record_.severity.empty()) sink(csv_record_);
    else ++malformed_;
  }
  csv_field_ = 0;
  csv_started_ = false;
  csv_record_ = LogRecord{};
}

}  // namespace pgpulse::agent::sources
