#include "collectors/exposition.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_map>

namespace pgpulse::collectors {

namespace {

// Longest value WriteValue produces: "-2.2250738585072014e-308".
constexpr size_t kMaxValueChars = 24;

char* Copy(char* p, std::string_view text) {
  std::memcpy(p, text.data(), text.size());
  return p + text.size();
}

__extension__ typedef unsigned __int128 Uint128;

struct PowersOfTen {
  Uint128 value[23];
};

constexpr PowersOfTen MakePowersOfTen() {
  PowersOfTen powers{};
  powers.value[0] = 1;
  for (int i = 1; i < 23; ++i) powers.value[i] = powers.value[i - 1] * 10;
  return powers;
}

constexpr PowersOfTen kPowersOfTen = MakePowersOfTen();

Uint128 Pow10(int exponent) { return kPowersOfTen.value[exponent]; }

constexpr uint64_t kTen15 = 1'000'000'000'000'000;
constexpr uint64_t kTen16 = 10 * kTen15;

// Lays out a decimal like printf("%.<precision>g"): `digits` holds the
// significant digits (no sign, `count` of them, the first nonzero) and
// `exponent` is the decimal exponent of the first digit.
char* WriteDecimal(char* p, uint64_t digits, int count, int exponent, int precision) {
  while (count > 1 && digits % 10 == 0) {
    digits /= 10;
    --count;
  }
  char text[20];
  std::to_chars(text, text + sizeof text, digits);
  if (exponent >= -4 && exponent < precision) {
    if (exponent < 0) {
      p = Copy(p, "0.");
      for (int i = -1; i > exponent; --i) *p++ = '0';
      return Copy(p, std::string_view(text, static_cast<size_t>(count)));
    }
    int integer_digits = exponent + 1;
    if (count <= integer_digits) {
      p = Copy(p, std::string_view(text, static_cast<size_t>(count)));
      for (int i = count; i < integer_digits; ++i) *p++ = '0';
      return p;
    }
    p = Copy(p, std::string_view(text, static_cast<size_t>(integer_digits)));
    *p++ = '.';
    return Copy(p, std::string_view(text + integer_digits, static_cast<size_t>(count - integer_digits)));
  }
  *p++ = text[0];
  if (count > 1) {
    *p++ = '.';
    p = Copy(p, std::string_view(text + 1, static_cast<size_t>(count - 1)));
  }
  *p++ = 'e';
  *p++ = exponent < 0 ? '-' : '+';
  int magnitude = exponent < 0 ? -exponent : exponent;
  if (magnitude < 10) *p++ = '0';
  return std::to_chars(p, p + 4, magnitude).ptr;
}

// The common non-integer case, 1e-5 <= |value| < 1e16, in exact 128-bit
// integer arithmetic: value = m / 2^s, and m * 10^k / 2^s rounded half-even
// is the correctly rounded decimal that printf would print. Returns nullptr
// when `value` is outside that range.
char* WriteFractionFast(char* p, double value) {
  double magnitude = std::fabs(value);
  if (!(magnitude >= 1e-5 && magnitude < 1e16)) return nullptr;
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  int biased_exponent = static_cast<int>((bits >> 52) & 0x7FF);
  uint64_t m = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1} << 52);
  int s = 1075 - biased_exponent;
  if (s < 1) return nullptr;  // an integer; not reached for values below 1e16

  // Decimal exponent of the first digit, then k so that m * 10^k / 2^s has 16 digits.
  static constexpr double kPowers[] = {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0,  1e1,  1e2,  1e3,  1e4, 1e5,
                                       1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  int exponent = 15;
  while (exponent > -5 && magnitude < kPowers[exponent + 5]) --exponent;
  int k = 15 - exponent;
  Uint128 scaled = Uint128{m} * Pow10(k);
  Uint128 whole = scaled >> s;
  // kPowers below 1 are not exact; fix a guess that is off by one.
  if (whole >= kTen16) {
    ++exponent;
    --k;
  } else if (whole < kTen15) {
    --exponent;
    ++k;
  }
  scaled = Uint128{m} * Pow10(k);
  whole = scaled >> s;
  Uint128 remainder = scaled - (whole << s);
  Uint128 half = Uint128{1} << (s - 1);
  bool round_up = remainder > half || (remainder == half && (whole & 1) != 0);
  uint64_t digits = static_cast<uint64_t>(whole) + (round_up ? 1 : 0);

  // Does the 16-digit decimal parse back to value? Its distance from value,
  // in units of 2^-s / 10^k, must be under half the gap 10^k to the next
  // double (at exactly half, parsing picks the even one). The gap below a
  // power of two is narrower, but powers of two in this range have at most
  // 16 digits, so those are written exactly.
  Uint128 distance = round_up ? (Uint128{1} << s) - remainder : remainder;
  Uint128 unit = Pow10(k);
  bool exact = 2 * distance < unit || (2 * distance == unit && (m & 1) == 0);

  if (value < 0) *p++ = '-';
  if (exact) {
    if (digits == kTen16) return WriteDecimal(p, kTen15, 16, exponent + 1, 16);
    return WriteDecimal(p, digits, 16, exponent, 16);
  }
  scaled = Uint128{m} * Pow10(k + 1);
  whole = scaled >> s;
  remainder = scaled - (whole << s);
  round_up = remainder > half || (remainder == half && (whole & 1) != 0);
  digits = static_cast<uint64_t>(whole) + (round_up ? 1 : 0);
  if (digits == 10 * kTen16) return WriteDecimal(p, kTen16, 17, exponent + 1, 17);
  return WriteDecimal(p, digits, 17, exponent, 17);
}

// Writes `value` into at least kMaxValueChars bytes at `p`; see AppendValue.
char* WriteValue(char* p, double value) {
  if (std::isnan(value)) return Copy(p, "Nan");
  if (std::isinf(value)) return Copy(p, value < 0 ? "-Inf" : "+Inf");

  // Integers below 1e16 (counts, bytes) are exact with %.16g and print as such.
  if (value > -1e16 && value < 1e16) {
    auto integer = static_cast<int64_t>(value);
    if (static_cast<double>(integer) == value) {
      if (integer == 0 && std::signbit(value)) *p++ = '-';
      return std::to_chars(p, p + kMaxValueChars, integer).ptr;
    }
  }
  if (char* end = WriteFractionFast(p, value)) return end;

  // Tiny and huge values: %.16g if it parses back exactly, else %.17g. (A
  // shortest form of at most 16 digits does not imply %.16g is exact: below
  // a power of two the gap to the next double is half as wide.)
  char* end = std::to_chars(p, p + kMaxValueChars, value, std::chars_format::general, 16).ptr;
  double parsed = 0;
  std::from_chars(p, end, parsed);
  if (parsed == value) return end;
  return std::to_chars(p, p + kMaxValueChars, value, std::chars_format::general, 17).ptr;
}

size_t HeaderBound(const Family& family) {
  size_t bound = 7 + family.name.size() + 1 + 9 + 1;  // "# TYPE " name ' ' "histogram" '\n'
  if (!family.help.empty()) bound += 7 + family.name.size() + 1 + 2 * family.help.size() + 1;
  return bound;
}

void AppendHeader(std::string& header, const Family& family) {
  if (!family.help.empty()) {
    header.append("# HELP ").append(family.name).push_back(' ');
    AppendEscapedHelp(header, family.help);
    header.push_back('\n');
  }
  header.append("# TYPE ").append(family.name).push_back(' ');
  header.append(KindName(family.kind)).push_back('\n');
}

// Writes samples [from, to) of `family`.
char* WriteSamples(char* p, std::string_view name, const Family& family, size_t from, size_t to) {
  if (family.shared) {
    for (size_t i = from; i < to; ++i) {
      p = Copy(p, name);
      p = Copy(p, family.shared->of(family.entry[i]));
      *p++ = ' ';
      p = WriteValue(p, family.values[i]);
      *p++ = '\n';
    }
    return p;
  }
  const char* suffixes = family.suffixes.data();
  uint32_t begin = from == 0 ? 0 : family.suffix_end[from - 1];
  for (size_t i = from; i < to; ++i) {
    uint32_t end = family.suffix_end[i];
    p = Copy(p, name);
    p = Copy(p, std::string_view(suffixes + begin, end - begin));
    *p++ = ' ';
    p = WriteValue(p, family.values[i]);
    *p++ = '\n';
    begin = end;
  }
  return p;
}

// Builds a sample's suffix: `part{labels,extra_name="extra_value"}`, where
// `labels` is already rendered without braces and may be empty.
void AddSample(Family& family, std::string& suffix, std::string_view part, std::string_view labels,
               std::string_view extra_name, std::string_view extra_value, double value) {
  suffix.assign(part);
  if (!labels.empty() || !extra_name.empty()) {
    suffix.push_back('{');
    suffix.append(labels);
    if (!extra_name.empty()) AppendLabel(suffix, extra_name, extra_value, labels.empty());
    suffix.push_back('}');
  }
  family.Add(suffix, value);
}

MetricKind KindOf(prometheus::MetricType type) {
  switch (type) {
    case prometheus::MetricType::Counter: return MetricKind::Counter;
    case prometheus::MetricType::Gauge: return MetricKind::Gauge;
    case prometheus::MetricType::Histogram: return MetricKind::Histogram;
    case prometheus::MetricType::Summary: return MetricKind::Summary;
    case prometheus::MetricType::Untyped: return MetricKind::Untyped;
  }
  return MetricKind::Untyped;
}

}  // namespace

void AppendValue(std::string& out, double value) {
  char buffer[kMaxValueChars];
  out.append(buffer, WriteValue(buffer, value));
}

namespace {

// Writes `families` (same-named ones as one family) into `out`, one family at a time; with a
// sink, hands `out` over whenever it holds `flush_bytes` or more, and at the end.
void WriteFamilies(std::string& out, const std::vector<const Family*>& families, size_t flush_bytes,
                   const ExpositionSink* sink) {
  // Chains same-named families: next[i] is the next family after i with
  // i's name, so each name is written once, at its first appearance.
  constexpr size_t kEnd = std::numeric_limits<size_t>::max();
  std::vector<size_t> next(families.size(), kEnd);
  std::vector<bool> continuation(families.size(), false);
  std::unordered_map<std::string_view, size_t> last_with_name;
  last_with_name.reserve(families.size());
  for (size_t i = 0; i < families.size(); ++i) {
    auto [it, inserted] = last_with_name.try_emplace(families[i]->name, i);
    if (!inserted) {
      next[it->second] = i;
      continuation[i] = true;
      it->second = i;
    }
  }

  auto bound_of = [&](size_t i) {
    const Family& first = *families[i];
    size_t bound = HeaderBound(first);
    for (size_t j = i; j != kEnd; j = next[j])
      bound += families[j]->suffix_bytes() + families[j]->size() * (first.name.size() + 2 + kMaxValueChars);
    return bound;
  };
  if (!sink) {
    // All of it in `out`: one allocation.
    size_t total = out.size();
    for (size_t i = 0; i < families.size(); ++i)
      if (!continuation[i]) total += bound_of(i);
    out.reserve(total);
  }
  std::string header;
  for (size_t i = 0; i < families.size(); ++i) {
    if (continuation[i]) continue;
    const Family& first = *families[i];
    header.clear();
    AppendHeader(header, first);
    if (!sink) {
      // Room for the whole family, then cut back to what was written (the writer never checks).
      const size_t start = out.size();
      out.resize(start + bound_of(i));
      char* p = Copy(out.data() + start, header);
      for (size_t j = i; j != kEnd; j = next[j]) p = WriteSamples(p, first.name, *families[j], 0, families[j]->size());
      out.resize(static_cast<size_t>(p - out.data()));
      continue;
    }
    // Streamed: in slices of samples that fit the piece, so that `out` never grows much past
    // flush_bytes, however large one family is (30,000 tables' worth of one column is 3 MB).
    out.append(header);
    for (size_t j = i; j != kEnd; j = next[j]) {
      const Family& family = *families[j];
      // No line of this family is longer: slices are sized without measuring each sample.
      const size_t line = first.name.size() + 2 + kMaxValueChars + family.longest_suffix;
      for (size_t from = 0; from < family.size();) {
        const size_t room = out.size() < flush_bytes ? flush_bytes - out.size() : 0;
        const size_t to = std::min(family.size(), from + std::max<size_t>(1, room / line));
        const size_t start = out.size();
        out.resize(start + (to - from) * line);
        char* p = WriteSamples(out.data() + start, first.name, family, from, to);
        out.resize(static_cast<size_t>(p - out.data()));
        from = to;
        if (out.size() >= flush_bytes) {
          (*sink)(out);
          out.clear();
        }
      }
    }
    if (!out.empty() && out.size() >= flush_bytes) {
      (*sink)(out);
      out.clear();
    }
  }
  if (sink && !out.empty()) {
    (*sink)(out);
    out.clear();
  }
}

}  // namespace

void WriteExposition(std::string& out, const std::vector<const Family*>& families) {
  WriteFamilies(out, families, 0, nullptr);
}

void WriteExposition(const std::vector<const Family*>& families, size_t flush_bytes, const ExpositionSink& sink) {
  std::string buffer;
  buffer.reserve(flush_bytes);
  WriteFamilies(buffer, families, flush_bytes, &sink);
}

std::vector<Family> FromPrometheus(const std::vector<prometheus::MetricFamily>& families) {
  std::vector<Family> result;
  result.reserve(families.size());
  std::string labels;
  std::string suffix;
  std::string bound;
  for (const auto& source : families) {
    Family& family = result.emplace_back();
    family.name = source.name;
    family.help = source.help;
    family.kind = KindOf(source.type);
    for (const auto& metric : source.metric) {
      labels.clear();
      for (const auto& label : metric.label) AppendLabel(labels, label.name, label.value, labels.empty());
      switch (source.type) {
        case prometheus::MetricType::Counter:
          AddSample(family, suffix, "", labels, "", "", metric.counter.value);
          break;
        case prometheus::MetricType::Gauge: AddSample(family, suffix, "", labels, "", "", metric.gauge.value); break;
        case prometheus::MetricType::Untyped:
          AddSample(family, suffix, "", labels, "", "", metric.untyped.value);
          break;
        case prometheus::MetricType::Summary: {
          const auto& summary = metric.summary;
          AddSample(family, suffix, "_count", labels, "", "", static_cast<double>(summary.sample_count));
          AddSample(family, suffix, "_sum", labels, "", "", summary.sample_sum);
          for (const auto& quantile : summary.quantile) {
            bound.clear();
            AppendValue(bound, quantile.quantile);
            AddSample(family, suffix, "", labels, "quantile", bound, quantile.value);
          }
          break;
        }
        case prometheus::MetricType::Histogram: {
          const auto& histogram = metric.histogram;
          AddSample(family, suffix, "_count", labels, "", "", static_cast<double>(histogram.sample_count));
          AddSample(family, suffix, "_sum", labels, "", "", histogram.sample_sum);
          double last = -std::numeric_limits<double>::infinity();
          for (const auto& bucket : histogram.bucket) {
            bound.clear();
            AppendValue(bound, bucket.upper_bound);
            AddSample(family, suffix, "_bucket", labels, "le", bound, static_cast<double>(bucket.cumulative_count));
            last = bucket.upper_bound;
          }
          // Like TextSerializer: the +Inf bucket is implied when not given.
          if (last != std::numeric_limits<double>::infinity()) {
            AddSample(family, suffix, "_bucket", labels, "le", "+Inf", static_cast<double>(histogram.sample_count));
          }
          break;
        }
      }
    }
  }
  return result;
}

}  // namespace pgpulse::collectors
