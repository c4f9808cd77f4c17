#pragma once
// One metric family's samples, stored so that writing the exposition is copying bytes.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgpulse::collectors {

// Summary exists only for families converted from prometheus-cpp (FromPrometheus).
enum class MetricKind { Gauge, Counter, Histogram, Untyped, Summary };

std::string_view KindName(MetricKind kind);

// The label suffixes of one result's rows, each stored once and shared by every family made
// from that result: a per-table query with twenty metric columns would otherwise hold each
// table's labels twenty times, in memory for as long as its result is cached.
struct SharedSuffixes {
  std::string text;           // all entries back to back
  std::vector<uint32_t> end;  // end offset in `text` of entry i

  size_t size() const { return end.size(); }
  std::string_view of(size_t i) const {
    size_t begin = i == 0 ? 0 : end[i - 1];
    return std::string_view(text).substr(begin, end[i] - begin);
  }
  uint32_t Add(std::string_view suffix) {
    text.append(suffix);
    end.push_back(static_cast<uint32_t>(text.size()));
    return static_cast<uint32_t>(end.size() - 1);
  }
};

// A sample is stored as its "series suffix": everything between the family
// name and the value, already escaped, e.g. `{datname="app",state="idle"}`,
// `` (no labels) or `_bucket{le="0.5"}` (histogram parts). Building the
// suffix once per row keeps the exposition path free of per-sample
// formatting work. A family holds either its own suffixes (Add) or entries
// of a SharedSuffixes (AddShared), never both.
struct Family {
  std::string name;
  std::string help;
  MetricKind kind = MetricKind::Gauge;

  std::string suffixes;                          // own: all samples' suffixes, back to back
  std::vector<uint32_t> suffix_end;              // own: end offset in `suffixes` of sample i
  std::shared_ptr<const SharedSuffixes> shared;  // shared: sample i's suffix is shared->of(entry[i])
  std::vector<uint32_t> entry;
  size_t shared_bytes = 0;    // shared: the length of all samples' suffixes
  size_t longest_suffix = 0;  // of any sample: bounds a slice of samples without measuring each
  std::vector<double> values;

  size_t size() const { return values.size(); }
  // The bytes all samples' suffixes take when written.
  size_t suffix_bytes() const { return shared ? shared_bytes : suffixes.size(); }
  std::string_view suffix(size_t i) const {
    if (shared) return shared->of(entry[i]);
    size_t begin = i == 0 ? 0 : suffix_end[i - 1];
    return std::string_view(suffixes).substr(begin, suffix_end[i] - begin);
  }
  void Add(std::string_view suffix, double value) {
    if (shared) Unshare();
    suffixes.append(suffix);
    suffix_end.push_back(static_cast<uint32_t>(suffixes.size()));
    longest_suffix = std::max(longest_suffix, suffix.size());
    values.push_back(value);
  }
  // A sample whose suffix is entry `e` of `shared`, which must be set (and is never changed).
  void AddShared(uint32_t e, double value) {
    entry.push_back(e);
    const size_t length = shared->of(e).size();
    shared_bytes += length;
    longest_suffix = std::max(longest_suffix, length);
    values.push_back(value);
  }
  // Copies the shared suffixes into the family's own, so that Add can follow.
  void Unshare();
};

// Appends `name="value"` with the value escaped as the text format requires
// (backslash, double quote and newline). `first` decides whether a comma
// precedes it; the caller writes the braces. A value that is not valid UTF-8
// (a name from a SQL_ASCII database) has each invalid byte replaced by U+FFFD,
// since Prometheus rejects the whole scrape for one invalid label value.
void AppendLabel(std::string& out, std::string_view name, std::string_view value, bool first);

// `value` as valid UTF-8: each byte that does not start a well-formed sequence
// becomes U+FFFD. Adds the replacements to `replaced`.
std::string ToValidUtf8(std::string_view value, size_t& replaced);

// Bytes replaced by U+FFFD in label values since the process started (any thread).
uint64_t InvalidUtf8Replacements();

// Renders a whole label set `{a="x",b="y"}`; empty string for no labels.
std::string RenderLabels(const std::vector<std::pair<std::string, std::string>>& labels);

// Escapes a HELP text (backslash and newline) as the text format requires.
void AppendEscapedHelp(std::string& out, std::string_view help);

}  // namespace pgpulse::collectors
