#pragma once
// One metric family's samples, stored so that writing the exposition is copying bytes.

#include <cstdint>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgpulse::collectors {

// Summary exists only for families converted from prometheus-cpp (FromPrometheus).
enum class MetricKind { Gauge, Counter, Histogram, Untyped, Summary };

std::string_view KindName(MetricKind kind);

// A sample is stored as its "series suffix": everything between the family
// name and the value, already escaped, e.g. `{datname="app",state="idle"}`,
// `` (no labels) or `_bucket{le="0.5"}` (histogram parts). Building the
// suffix once per row and copying it into each family of that row keeps the
// exposition path free of per-sample formatting work.
struct Family {
  std::string name;
  std::string help;
  MetricKind kind = MetricKind::Gauge;

  std::string suffixes;              // all samples' suffixes, back to back
  std::vector<uint32_t> suffix_end;  // end offset in `suffixes` of sample i
  std::vector<double> values;

  size_t size() const { return values.size(); }
  std::string_view suffix(size_t i) const {
    size_t begin = i == 0 ? 0 : suffix_end[i - 1];
    return std::string_view(suffixes).substr(begin, suffix_end[i] - begin);
  }
  void Add(std::string_view suffix, double value) {
    suffixes.append(suffix);
    suffix_end.push_back(static_cast<uint32_t>(suffixes.size()));
    values.push_back(value);
  }
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
