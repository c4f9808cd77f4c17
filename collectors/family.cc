#include "collectors/family.h"

#include <atomic>
#include <cstdint>
#include <cstring>

namespace pgpulse::collectors {

namespace {

// For each byte, the letter that follows the backslash when it is escaped,
// or 0 when it is written as is.
struct EscapeTable {
  char letter[256];
};

constexpr EscapeTable MakeEscapeTable(bool quote) {
  EscapeTable table{};
  table.letter[static_cast<unsigned char>('\\')] = '\\';
  table.letter[static_cast<unsigned char>('\n')] = 'n';
  if (quote) table.letter[static_cast<unsigned char>('"')] = '"';
  return table;
}

constexpr EscapeTable kLabelValueEscapes = MakeEscapeTable(true);
constexpr EscapeTable kHelpEscapes = MakeEscapeTable(false);

// Copies unescaped runs whole, so the usual value with nothing to escape
// costs one scan and one append.
void AppendEscaped(std::string& out, std::string_view text, const EscapeTable& table) {
  const char* run = text.data();
  const char* end = text.data() + text.size();
  for (const char* p = run; p != end; ++p) {
    char letter = table.letter[static_cast<unsigned char>(*p)];
    if (letter == 0) continue;
    out.append(run, static_cast<size_t>(p - run));
    out.push_back('\\');
    out.push_back(letter);
    run = p + 1;
  }
  out.append(run, static_cast<size_t>(end - run));
}

// Whether `text` holds a backslash, double quote or newline, tested eight
// bytes at a time: label values rarely need escaping, and this check is most
// of the work of appending one.
bool NeedsLabelEscape(std::string_view text) {
  constexpr uint64_t kOnes = 0x0101'0101'0101'0101;
  constexpr uint64_t kHighBits = 0x8080'8080'8080'8080;
  auto has_byte = [](uint64_t word, unsigned char byte) {
    uint64_t x = word ^ (kOnes * byte);
    return (x - kOnes) & ~x & kHighBits;  // nonzero iff some byte of x is zero
  };
  const char* p = text.data();
  const char* end = p + text.size();
  for (; end - p >= 8; p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
    if (has_byte(word, '\\') | has_byte(word, '"') | has_byte(word, '\n')) return true;
  }
  for (; p != end; ++p) {
    if (kLabelValueEscapes.letter[static_cast<unsigned char>(*p)] != 0) return true;
  }
  return false;
}

std::atomic<uint64_t> invalid_utf8_replacements{0};

// Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, surrogates or
// code points above U+10FFFF), or 0 if there is none.
size_t Utf8SequenceLength(const unsigned char* p, const unsigned char* end) {
  unsigned char c = p[0];
  size_t n = c < 0x80                   ? 1
             : (c >= 0xc2 && c <= 0xdf) ? 2
             : (c >= 0xe0 && c <= 0xef) ? 3
             : (c >= 0xf0 && c <= 0xf4) ? 4
                                        : 0;
  if (n == 0 || static_cast<size_t>(end - p) < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((p[i] & 0xc0) != 0x80) return 0;
  }
  if (c == 0xe0 && p[1] < 0xa0) return 0;  // overlong
  if (c == 0xed && p[1] > 0x9f) return 0;  // UTF-16 surrogate
  if (c == 0xf0 && p[1] < 0x90) return 0;  // overlong
  if (c == 0xf4 && p[1] > 0x8f) return 0;  // above U+10FFFF
  return n;
}

bool IsValidUtf8(std::string_view v) {
  auto* p = reinterpret_cast<const unsigned char*>(v.data());
  auto* end = p + v.size();
  while (p != end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    size_t n = Utf8SequenceLength(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

}  // namespace

std::string ToValidUtf8(std::string_view value, size_t& replaced) {
  std::string out;
  out.reserve(value.size() + 8);
  auto* p = reinterpret_cast<const unsigned char*>(value.data());
  auto* end = p + value.size();
  while (p != end) {
    size_t n = Utf8SequenceLength(p, end);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++replaced;
      ++p;
    } else {
      out.append(reinterpret_cast<const char*>(p), n);
      p += n;
    }
  }
  return out;
}

uint64_t InvalidUtf8Replacements() { return invalid_utf8_replacements.load(std::memory_order_relaxed); }

void Family::Unshare() {
  std::string own;
  std::vector<uint32_t> own_end;
  own.reserve(shared_bytes);
  own_end.reserve(entry.size());
  for (size_t i = 0; i < entry.size(); ++i) {
    own.append(shared->of(entry[i]));
    own_end.push_back(static_cast<uint32_t>(own.size()));
  }
  suffixes = std::move(own);
  suffix_end = std::move(own_end);
  shared.reset();
  entry = {};
  shared_bytes = 0;
}

std::string_view KindName(MetricKind kind) {
  switch (kind) {
    case MetricKind::Gauge: return "gauge";
    case MetricKind::Counter: return "counter";
    case MetricKind::Histogram: return "histogram";
    case MetricKind::Untyped: return "untyped";
    case MetricKind::Summary: return "summary";
  }
  return "untyped";
}

void AppendLabel(std::string& out, std::string_view name, std::string_view value, bool first) {
  if (!value.empty() && !IsValidUtf8(value)) {
    size_t replaced = 0;
    std::string valid = ToValidUtf8(value, replaced);
    invalid_utf8_replacements.fetch_add(replaced, std::memory_order_relaxed);
    AppendLabel(out, name, valid, first);
    return;
  }
  size_t escapes = 0;
  if (NeedsLabelEscape(value)) {
    for (char c : value) escapes += kLabelValueEscapes.letter[static_cast<unsigned char>(c)] != 0;
  }
  size_t at = out.size();
  out.resize(at + (first ? 0 : 1) + name.size() + 2 + value.size() + escapes + 1);
  char* p = out.data() + at;
  if (!first) *p++ = ',';
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = '=';
  *p++ = '"';
  if (escapes == 0) {
    // An empty view may have a null data pointer (a NULL label), which memcpy must not see.
    if (!value.empty()) std::memcpy(p, value.data(), value.size());
    p += value.size();
  } else {
    for (char c : value) {
      char letter = kLabelValueEscapes.letter[static_cast<unsigned char>(c)];
      if (letter != 0) *p++ = '\\';
      *p++ = letter != 0 ? letter : c;
    }
  }
  *p = '"';
}

std::string RenderLabels(const std::vector<std::pair<std::string, std::string>>& labels) {
  std::string out;
  if (labels.empty()) return out;
  size_t size = 2;
  for (const auto& [name, value] : labels) size += name.size() + value.size() + 4;
  out.reserve(size);
  out.push_back('{');
  bool first = true;
  for (const auto& [name, value] : labels) {
    AppendLabel(out, name, value, first);
    first = false;
  }
  out.push_back('}');
  return out;
}

void AppendEscapedHelp(std::string& out, std::string_view help) { AppendEscaped(out, help, kHelpEscapes); }

}  // namespace pgpulse::collectors
