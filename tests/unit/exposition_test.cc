#include "collectors/exposition.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "collectors/family.h"

namespace pgpulse::collectors {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr double kInf = std::numeric_limits<double>::infinity();

Family Named(std::string name, std::string help, MetricKind kind) {
  Family f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.kind = kind;
  return f;
}
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

std::string Value(double value) {
  std::string out;
  AppendValue(out, value);
  return out;
}

std::string Write(const std::vector<Family>& families) {
  std::vector<const Family*> pointers;
  for (const auto& family : families) pointers.push_back(&family);
  std::string out;
  WriteExposition(out, pointers);
  return out;
}

std::string Reference(const std::vector<MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

uint64_t Bits(double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

double FromBits(uint64_t bits) {
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

int SignificantDigits(const std::string& text) {
  int digits = 0;
  bool leading = true;
  for (char c : text) {
    if (c == 'e') break;
    if (c < '0' || c > '9') continue;
    if (leading && c == '0') continue;
    leading = false;
    ++digits;
  }
  return digits;
}

ClientMetric Metric(std::vector<ClientMetric::Label> labels) {
  ClientMetric metric;
  metric.label = std::move(labels);
  return metric;
}

ClientMetric GaugeMetric(std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric metric = Metric(std::move(labels));
  metric.gauge.value = value;
  return metric;
}

// TextSerializer's rendering of each value, one gauge sample per value.
std::vector<std::string> ReferenceValues(const std::vector<double>& values) {
  MetricFamily family{"v", "", MetricType::Gauge, {}};
  for (double value : values) family.metric.push_back(GaugeMetric({}, value));
  std::string text = Reference({family});
  std::vector<std::string> result;
  size_t line = text.find('\n') + 1;  // skips "# TYPE v gauge"
  while (line < text.size()) {
    size_t end = text.find('\n', line);
    result.push_back(text.substr(line + 2, end - line - 2));  // skips "v "
    line = end + 1;
  }
  return result;
}

std::vector<double> RandomBitPatterns(size_t count) {
  std::mt19937_64 random(20240601);
  std::vector<double> values;
  for (size_t i = 0; i < count; ++i) {
    uint64_t bits = random();
    switch (i % 6) {
      case 0:  // any bit pattern
        break;
      case 1:  // subnormal
        bits &= 0x800F'FFFF'FFFF'FFFFull;
        break;
      case 2:  // huge: biased exponent near the top
        bits = (bits & 0x800F'FFFF'FFFF'FFFFull) | (uint64_t{0x7C0 + (bits >> 52) % 0x3F} << 52);
        break;
      case 3:  // tiny normal: biased exponent near the bottom
        bits = (bits & 0x800F'FFFF'FFFF'FFFFull) | (uint64_t{1 + (bits >> 52) % 0x40} << 52);
        break;
      case 4:  // everyday magnitudes, about 1e-7 to 1e17
        bits = (bits & 0x800F'FFFF'FFFF'FFFFull) | (uint64_t{1000 + (bits >> 52) % 80} << 52);
        break;
      case 5: {  // a decimal as a database prints it, e.g. 12345.678
        char text[40];
        std::snprintf(text, sizeof text, "%llue-%d", static_cast<unsigned long long>(bits % 100'000'000'000'000'000ull),
                      static_cast<int>((bits >> 60) % 12));
        bits = Bits(std::strtod(text, nullptr));
        break;
      }
    }
    values.push_back(FromBits(bits));
  }
  return values;
}

// Values TextSerializer prints exactly: integers up to 2^53, decimals with at
// most 15 significant digits, zeros and the special values.
std::vector<double> NiceValues() {
  std::mt19937_64 random(7);
  std::vector<double> values = {0.0,
                                -0.0,
                                kNan,
                                kInf,
                                -kInf,
                                1.0,
                                -1.0,
                                0.1,
                                0.3,
                                1e21,
                                1e22,
                                1e16,
                                1e15,
                                1e-4,
                                1e-5,
                                1000000,
                                9007199254740992.0,
                                -9007199254740992.0,
                                123456.5,
                                2.5e-5};
  for (int i = 0; i < 20000; ++i) {
    double integer = static_cast<double>(random() % (uint64_t{1} << 53));
    values.push_back(i % 2 ? integer : -integer);
  }
  for (int i = 0; i < 60000; ++i) {
    uint64_t digits = 1 + random() % 15;
    uint64_t limit = 1;
    for (uint64_t d = 0; d < digits; ++d) limit *= 10;
    char text[64];
    int exponent = static_cast<int>(random() % 600) - 300;
    if (i % 2) exponent = static_cast<int>(random() % 40) - 20;  // the everyday range
    std::snprintf(text, sizeof text, "%s%llue%d", i % 3 ? "" : "-", static_cast<unsigned long long>(random() % limit),
                  exponent);
    values.push_back(std::strtod(text, nullptr));
  }
  return values;
}

TEST(KindName, NamesTextFormatTypes) {
  EXPECT_EQ(KindName(MetricKind::Gauge), "gauge");
  EXPECT_EQ(KindName(MetricKind::Counter), "counter");
  EXPECT_EQ(KindName(MetricKind::Histogram), "histogram");
  EXPECT_EQ(KindName(MetricKind::Untyped), "untyped");
  EXPECT_EQ(KindName(MetricKind::Summary), "summary");
}

TEST(RenderLabels, EscapesBackslashQuoteAndNewline) {
  EXPECT_EQ(RenderLabels({{"path", "C:\\dir"}, {"q", "say \"hi\""}, {"text", "a\nb"}}),
            R"({path="C:\\dir",q="say \"hi\"",text="a\nb"})");
}

TEST(RenderLabels, NoLabelsRenderAsNothing) { EXPECT_EQ(RenderLabels({}), ""); }

TEST(RenderLabels, KeepsOrderAndUtf8AndEmptyValues) {
  EXPECT_EQ(RenderLabels({{"z", "ünï"}, {"a", ""}, {"m", "日本"}}), R"({z="ünï",a="",m="日本"})");
}

TEST(AppendLabel, CommaOnlyAfterFirst) {
  std::string out;
  AppendLabel(out, "a", "1", true);
  AppendLabel(out, "b", "2", false);
  EXPECT_EQ(out, R"(a="1",b="2")");
}

TEST(AppendLabel, EscapesEveryByteLikeTextSerializer) {
  std::string all_bytes;
  for (int c = 1; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  MetricFamily family{"g", "", MetricType::Gauge, {GaugeMetric({{"a", all_bytes}, {"b", "\\\\\"\n\n"}}, 1)}};
  // Unlike TextSerializer, bytes that are not valid UTF-8 (here every one from 0x80, each
  // alone) become U+FFFD: Prometheus rejects a scrape with invalid UTF-8 in a label value.
  size_t replaced = 0;
  MetricFamily valid{
      "g", "", MetricType::Gauge, {GaugeMetric({{"a", ToValidUtf8(all_bytes, replaced)}, {"b", "\\\\\"\n\n"}}, 1)}};
  EXPECT_EQ(replaced, 128u);
  EXPECT_EQ(Write(FromPrometheus({family})), Reference({valid}));
}

TEST(AppendLabel, FindsEscapesAtEveryPosition) {
  for (size_t length = 1; length <= 24; ++length) {
    for (size_t position = 0; position < length; ++position) {
      for (char special : {'\\', '"', '\n'}) {
        std::string value(length, 'x');
        value[position] = special;
        std::string escaped = special == '\n' ? "\\n" : std::string{'\\', special};
        std::string expected = "a=\"" + std::string(position, 'x') + escaped + std::string(length - position - 1, 'x') +
                               "\"";
        std::string out;
        AppendLabel(out, "a", value, true);
        ASSERT_EQ(out, expected);
      }
    }
  }
}

TEST(AppendEscapedHelp, EscapesBackslashAndNewlineOnly) {
  std::string out;
  AppendEscapedHelp(out, "Line one\nC:\\dir \"quoted\"");
  EXPECT_EQ(out, R"(Line one\nC:\\dir "quoted")");
}

TEST(WriteExposition, EscapesHelpAsTheSpecSaysUnlikeTextSerializer) {
  MetricFamily family{"g", "Two\nlines \\ here", MetricType::Gauge, {GaugeMetric({}, 1)}};
  EXPECT_EQ(Write(FromPrometheus({family})), "# HELP g Two\\nlines \\\\ here\n# TYPE g gauge\ng 1\n");
  // prometheus-cpp 1.0 writes the raw newline, which breaks the exposition;
  // this is the one intended difference in what we write.
  EXPECT_EQ(Reference({family}), "# HELP g Two\nlines \\ here\n# TYPE g gauge\ng 1\n");
}

TEST(WriteExposition, WritesFamilyBuiltWithRenderLabels) {
  Family family;
  family.name = "pg_stat_activity_count";
  family.help = "Connections by state.";
  family.kind = MetricKind::Gauge;
  family.Add(RenderLabels({{"datname", "app"}, {"state", "idle"}}), 3);
  family.Add(RenderLabels({{"datname", "app"}, {"state", "idle in transaction"}}), 0.5);
  family.Add(RenderLabels({}), 4);
  EXPECT_EQ(Write({family}),
            "# HELP pg_stat_activity_count Connections by state.\n"
            "# TYPE pg_stat_activity_count gauge\n"
            "pg_stat_activity_count{datname=\"app\",state=\"idle\"} 3\n"
            "pg_stat_activity_count{datname=\"app\",state=\"idle in transaction\"} 0.5\n"
            "pg_stat_activity_count 4\n");
}

TEST(WriteExposition, GroupsFamiliesSharingANameInFirstSeenOrder) {
  Family db1 = Named("pg_size_bytes", "Database size.", MetricKind::Gauge);
  db1.Add(R"({datname="one"})", 10);
  Family other = Named("pg_up", "", MetricKind::Gauge);
  other.Add("", 1);
  Family db2 = Named("pg_size_bytes", "Ignored: the first family's help wins.", MetricKind::Counter);
  db2.Add(R"({datname="two"})", 20);
  db2.Add(R"({datname="three"})", 30);
  Family empty_same_name = Named("pg_up", "ignored", MetricKind::Counter);
  EXPECT_EQ(Write({db1, other, db2, empty_same_name}),
            "# HELP pg_size_bytes Database size.\n"
            "# TYPE pg_size_bytes gauge\n"
            "pg_size_bytes{datname=\"one\"} 10\n"
            "pg_size_bytes{datname=\"two\"} 20\n"
            "pg_size_bytes{datname=\"three\"} 30\n"
            "# TYPE pg_up gauge\n"
            "pg_up 1\n");
}

TEST(WriteExposition, AppendsToWhatIsAlreadyInTheOutput) {
  Family family = Named("up", "", MetricKind::Gauge);
  family.Add("", 1);
  std::string out = "# previous\n";
  WriteExposition(out, {&family});
  EXPECT_EQ(out, "# previous\n# TYPE up gauge\nup 1\n");
}

TEST(WriteExposition, StreamedInPiecesItIsTheSameText) {
  std::vector<Family> families;
  for (int f = 0; f < 50; ++f) {
    Family& family = families.emplace_back();
    family.name = "pg_family_" + std::to_string(f % 20);  // names repeat: written as one family
    family.help = "Family " + std::to_string(f % 20) + ".";
    family.kind = MetricKind::Gauge;
    for (int i = 0; i < 100; ++i)
      family.Add(RenderLabels({{"f", std::to_string(f)}, {"i", std::to_string(i)}}), f * 1000 + i + 0.25);
  }
  // One family far larger than a piece, its labels shared with another (a per-table result).
  auto shared = std::make_shared<SharedSuffixes>();
  for (int i = 0; i < 3000; ++i) shared->Add(RenderLabels({{"relname", "t" + std::to_string(i)}}));
  for (const char* name : {"pg_big_a", "pg_big_b"}) {
    Family& family = families.emplace_back();
    family.name = name;
    family.shared = shared;
    for (uint32_t i = 0; i < 3000; ++i) family.AddShared(i, i * 0.5);
  }
  std::vector<const Family*> order;
  for (const Family& f : families) order.push_back(&f);
  std::string whole;
  WriteExposition(whole, order);
  for (size_t flush : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 30}) {
    std::string streamed;
    std::vector<std::string> pieces;
    WriteExposition(order, flush, [&](std::string& text) {
      pieces.push_back(text);
      streamed += text;
    });
    EXPECT_EQ(streamed, whole) << "flush at " << flush;
    // Every piece but the last is at least the flush size and at most a sample line (and a family
    // header) beyond it, however large the family: pieces end between samples.
    for (size_t i = 0; i < pieces.size(); ++i) {
      EXPECT_EQ(pieces[i].back(), '\n') << "flush at " << flush << ", piece " << i;
      if (i + 1 < pieces.size()) {
        EXPECT_GE(pieces[i].size(), flush) << "flush at " << flush << ", piece " << i;
      }
      EXPECT_LE(pieces[i].size(), std::max<size_t>(flush, 1) + 200) << "flush at " << flush << ", piece " << i;
    }
    if (flush == 4096) {
      EXPECT_GT(pieces.size(), whole.size() / 4096 - 1);
    }
    if (flush == (size_t{1} << 30)) {
      EXPECT_EQ(pieces.size(), 1u);
    }
  }
}

TEST(WriteExposition, EmptyFamilyWritesHeaderLikeTextSerializer) {
  MetricFamily no_help{"a_total", "", MetricType::Counter, {}};
  MetricFamily with_help{"b", "B help.", MetricType::Gauge, {}};
  EXPECT_EQ(Write(FromPrometheus({no_help, with_help})), Reference({no_help, with_help}));
  EXPECT_EQ(Write(FromPrometheus({no_help, with_help})), "# TYPE a_total counter\n# HELP b B help.\n# TYPE b gauge\n");
}

TEST(WriteExposition, FitsHeaderWhoseHelpIsAllEscapes) {
  Family family = Named("h", "\n\\\n\\", MetricKind::Histogram);
  EXPECT_EQ(Write({family}), "# HELP h \\n\\\\\\n\\\\\n# TYPE h histogram\n");
}

TEST(WriteExposition, NoFamiliesWriteNothing) { EXPECT_EQ(Write({}), ""); }

TEST(AppendValue, FormatsLikePrintfSixteenDigitsWhenThatIsExact) {
  EXPECT_EQ(Value(0.1), "0.1");
  EXPECT_EQ(Value(1e21), "1e+21");
  EXPECT_EQ(Value(1e16), "1e+16");
  EXPECT_EQ(Value(1e15), "1000000000000000");
  EXPECT_EQ(Value(1000000), "1000000");
  EXPECT_EQ(Value(-0.0), "-0");
  EXPECT_EQ(Value(0.0), "0");
  EXPECT_EQ(Value(1e-4), "0.0001");
  EXPECT_EQ(Value(1e-5), "1e-05");
  EXPECT_EQ(Value(2.5e-5), "2.5e-05");
  EXPECT_EQ(Value(123456.5), "123456.5");
  EXPECT_EQ(Value(-42), "-42");
  EXPECT_EQ(Value(9007199254740992.0), "9007199254740992");
  EXPECT_EQ(Value(5e-324), "4.940656458412465e-324");
}

TEST(AppendValue, WritesSpecialValuesLikeTextSerializer) {
  EXPECT_EQ(Value(kNan), "Nan");
  EXPECT_EQ(Value(-kNan), "Nan");
  EXPECT_EQ(Value(kInf), "+Inf");
  EXPECT_EQ(Value(-kInf), "-Inf");
}

TEST(AppendValue, AddsSeventeenthDigitWhereSixteenLoseThePrecision) {
  EXPECT_EQ(Value(123456789012345678.0), "1.2345678901234568e+17");
  EXPECT_EQ(Value(0.30000000000000004), "0.30000000000000004");
  EXPECT_EQ(Value(std::numeric_limits<double>::max()), "1.7976931348623157e+308");
  EXPECT_EQ(Value(std::numeric_limits<double>::min()), "2.2250738585072014e-308");
  EXPECT_EQ(Value(-std::numeric_limits<double>::min()), "-2.2250738585072014e-308");
  EXPECT_EQ(Value(12345678901234567.0), "12345678901234568");  // fixed up to 17 integer digits
  EXPECT_EQ(Value(0.00012345678901234567), "0.00012345678901234567");
}

TEST(AppendValue, ParsesBackToTheSameBitsForRandomDoubles) {
  for (double value : RandomBitPatterns(400000)) {
    std::string text = Value(value);
    if (std::isnan(value)) {
      EXPECT_EQ(text, "Nan");
      continue;
    }
    double parsed = std::strtod(text.c_str(), nullptr);
    ASSERT_EQ(Bits(parsed), Bits(value)) << text;
  }
}

// Expects each value written exactly as TextSerializer writes it when that
// parses back to the value, else as printf("%.17g"); returns how many values
// TextSerializer writes exactly.
size_t ExpectTextSerializerOrSeventeenDigits(const std::vector<double>& values) {
  std::vector<std::string> reference = ReferenceValues(values);
  EXPECT_EQ(reference.size(), values.size());
  size_t exact = 0;
  for (size_t i = 0; i < values.size() && i < reference.size(); ++i) {
    std::string ours = Value(values[i]);
    if (std::isnan(values[i]) || Bits(std::strtod(reference[i].c_str(), nullptr)) == Bits(values[i])) {
      ++exact;
      EXPECT_EQ(ours, reference[i]);
    } else {
      char printf17[40];
      std::snprintf(printf17, sizeof printf17, "%.17g", values[i]);
      EXPECT_EQ(ours, printf17) << "TextSerializer: " << reference[i];
      EXPECT_EQ(SignificantDigits(ours), 17) << ours;
    }
    if (::testing::Test::HasFailure()) break;
  }
  return exact;
}

TEST(AppendValue, MatchesTextSerializerWhereverItIsExact) {
  std::vector<double> values = RandomBitPatterns(300000);
  size_t exact = ExpectTextSerializerOrSeventeenDigits(values);
  // Both branches ran: about half of all doubles need the 17th digit.
  EXPECT_GT(exact, values.size() / 4);
  EXPECT_LT(exact, values.size() * 3 / 4);
}

// Powers of ten and two and their neighbours: where the decimal exponent
// changes, where the gap to the next double halves, and around the limits
// of the exact integer arithmetic (1e-5 and 1e16).
TEST(AppendValue, IsExactAtPowersOfTenAndTwo) {
  std::vector<double> centers;
  for (int exponent = -8; exponent <= 18; ++exponent) {
    centers.push_back(std::strtod(("1e" + std::to_string(exponent)).c_str(), nullptr));
    centers.push_back(std::strtod(("5e" + std::to_string(exponent)).c_str(), nullptr));
    centers.push_back(std::strtod(("9.999999999999999e" + std::to_string(exponent)).c_str(), nullptr));
  }
  for (int exponent = -30; exponent <= 64; ++exponent) centers.push_back(std::ldexp(1.0, exponent));
  std::vector<double> values;
  for (double center : centers) {
    double below = center;
    double above = center;
    for (int step = 0; step < 4; ++step) {
      for (double value : {below, above, -below, -above}) values.push_back(value);
      below = std::nextafter(below, 0.0);
      above = std::nextafter(above, kInf);
    }
  }
  ExpectTextSerializerOrSeventeenDigits(values);
  for (double value : values) {
    EXPECT_EQ(Bits(std::strtod(Value(value).c_str(), nullptr)), Bits(value)) << Value(value);
  }
}

// Exact ties: values whose exact decimal expansion ends in 5 right after the
// 16th or 17th significant digit, where rounding must go to even like printf.
TEST(AppendValue, RoundsTiesToEvenLikePrintf) {
  std::vector<double> values;
  for (int shift = 1; shift <= 12; ++shift) {
    for (uint64_t m = (uint64_t{1} << 52) + 1; m < (uint64_t{1} << 52) + 3000; ++m) {
      values.push_back(std::ldexp(static_cast<double>(m), -shift));
    }
  }
  ExpectTextSerializerOrSeventeenDigits(values);
}

TEST(AppendValue, MatchesTextSerializerForNiceValues) {
  std::vector<double> values = NiceValues();
  std::vector<std::string> reference = ReferenceValues(values);
  ASSERT_EQ(reference.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) ASSERT_EQ(Value(values[i]), reference[i]) << values[i];
}

// Several families covering what the agent's registry and converted
// collectors produce; no value here loses precision in TextSerializer.
std::vector<MetricFamily> ReferenceFamilies() {
  std::vector<MetricFamily> families;

  MetricFamily commits{
      "pg_stat_database_xact_commit_total", "Transactions committed, since the stats reset.", MetricType::Counter, {}};
  const char* datnames[] = {"postgres", "app",      "ünïcödé",    "日本語のデータベース",
                            "we\\ird",  "quo\"ted", "two\nlines", "all\\\"\n\\three",
                            "",         "emoji 🐘"};
  double counts[] = {0, 1, 1234567, 9007199254740992.0, 1e15, 42, 1e21, 3e-7, 0.5, 123456.789};
  for (size_t i = 0; i < std::size(datnames); ++i) {
    ClientMetric metric = Metric({{"datname", datnames[i]}, {"server", "primary:5432"}});
    metric.counter.value = counts[i];
    commits.metric.push_back(metric);
  }
  families.push_back(commits);

  MetricFamily values{"pg_values", "Values of every shape.", MetricType::Gauge, {}};
  double shapes[] = {0.1,    1e21,     1000000, -0.0, kNan, kInf,   -kInf, 1e-5,          1e-4,     0.3,
                     2.5e-5, 123456.5, -17.25,  1e16, 1e15, 5e-324, 1e300, 6.02214076e23, 299792458};
  for (size_t i = 0; i < std::size(shapes); ++i) {
    std::vector<ClientMetric::Label> labels;
    for (size_t l = 0; l < i % 11; ++l) {  // 0 to 10 labels
      labels.push_back({"label_" + std::to_string(l), "value " + std::to_string(i * l)});
    }
    values.metric.push_back(GaugeMetric(labels, shapes[i]));
  }
  families.push_back(values);

  MetricFamily untyped{"pg_settings_untyped", "", MetricType::Untyped, {}};
  for (int i = 0; i < 5; ++i) {
    ClientMetric metric = Metric({{"name", "setting_" + std::to_string(i)}});
    metric.untyped.value = i * 1.5;
    untyped.metric.push_back(metric);
  }
  families.push_back(untyped);

  MetricFamily latency{"pgpulse_scrape_duration_seconds", "Scrape duration per collector.", MetricType::Histogram, {}};
  {
    ClientMetric metric = Metric({{"collector", "locks"}, {"target", "main"}});
    metric.histogram.sample_count = 7;
    metric.histogram.sample_sum = 0.375;
    metric.histogram.bucket = {{1, 0.005}, {3, 0.1}, {5, 2.5}, {6, 1e21}};  // +Inf implied
    latency.metric.push_back(metric);
  }
  {
    ClientMetric metric = Metric({{"collector", "size \"quoted\""}, {"target", "main"}});
    metric.histogram.sample_count = 4;
    metric.histogram.sample_sum = 12;
    metric.histogram.bucket = {{1, 1}, {4, kInf}};  // +Inf given
    latency.metric.push_back(metric);
  }
  {
    ClientMetric metric;  // no labels, no buckets
    latency.metric.push_back(metric);
  }
  families.push_back(latency);

  MetricFamily summary{"pgpulse_query_seconds", "Query time.", MetricType::Summary, {}};
  {
    ClientMetric metric = Metric({{"collector", "activity"}});
    metric.summary.sample_count = 10;
    metric.summary.sample_sum = 1.25;
    metric.summary.quantile = {{0.5, 0.1}, {0.9, 0.2}, {0.99, 0.5}};
    summary.metric.push_back(metric);
  }
  families.push_back(summary);

  families.push_back(MetricFamily{"pgpulse_empty", "", MetricType::Gauge, {}});

  MetricFamily no_help{"pgpulse_no_help", "", MetricType::Gauge, {GaugeMetric({}, 1), GaugeMetric({{"a", "b"}}, 2)}};
  families.push_back(no_help);
  return families;
}

TEST(FromPrometheus, MatchesTextSerializerByteForByte) {
  std::vector<MetricFamily> families = ReferenceFamilies();
  EXPECT_EQ(Write(FromPrometheus(families)), Reference(families));
}

TEST(FromPrometheus, MatchesTextSerializerForRegistryMetrics) {
  prometheus::Registry registry;
  auto& scrapes = prometheus::BuildCounter().Name("pgpulse_scrapes_total").Help("Scrapes served.").Register(registry);
  scrapes.Add({{"target", "main"}}).Increment(41);
  scrapes.Add({{"target", "replica \"b\""}}).Increment(0.5);
  auto& up = prometheus::BuildGauge().Name("pgpulse_up").Help("Target reachable.").Register(registry);
  up.Add({{"target", "main"}}).Set(1);
  up.Add({}).Set(-0.0);
  auto& durations = prometheus::BuildHistogram()
                        .Name("pgpulse_collector_duration_seconds")
                        .Help("Collector duration.")
                        .Register(registry);
  auto& histogram = durations.Add({{"collector", "locks"}}, prometheus::Histogram::BucketBoundaries{0.01, 0.1, 1, 10});
  for (double observed : {0.005, 0.05, 0.5, 5.0, 50.0}) histogram.Observe(observed);
  std::vector<MetricFamily> families = registry.Collect();
  EXPECT_EQ(Write(FromPrometheus(families)), Reference(families));
}

TEST(FromPrometheus, WritesHistogramPartsInTextSerializerOrder) {
  ClientMetric metric = Metric({{"z", "1"}, {"a", "2"}});
  metric.histogram.sample_count = 3;
  metric.histogram.sample_sum = 2.5;
  metric.histogram.bucket = {{1, 0.5}, {2, 1}};
  MetricFamily family{"h", "Hist.", MetricType::Histogram, {metric}};
  std::vector<Family> converted = FromPrometheus({family});
  ASSERT_EQ(converted.size(), 1u);
  EXPECT_EQ(converted[0].kind, MetricKind::Histogram);
  EXPECT_EQ(Write(converted),
            "# HELP h Hist.\n"
            "# TYPE h histogram\n"
            "h_count{z=\"1\",a=\"2\"} 3\n"
            "h_sum{z=\"1\",a=\"2\"} 2.5\n"
            "h_bucket{z=\"1\",a=\"2\",le=\"0.5\"} 1\n"
            "h_bucket{z=\"1\",a=\"2\",le=\"1\"} 2\n"
            "h_bucket{z=\"1\",a=\"2\",le=\"+Inf\"} 3\n");
  EXPECT_EQ(Write(converted), Reference({family}));
}

TEST(FromPrometheus, WritesSummaryLikeTextSerializer) {
  ClientMetric metric = Metric({{"a", "1"}});
  metric.summary.sample_count = 4;
  metric.summary.sample_sum = 1.5;
  metric.summary.quantile = {{0.5, 1}, {0.99, 0.1}};
  MetricFamily family{"s", "Sum.", MetricType::Summary, {metric}};
  EXPECT_EQ(Write(FromPrometheus({family})),
            "# HELP s Sum.\n"
            "# TYPE s summary\n"
            "s_count{a=\"1\"} 4\n"
            "s_sum{a=\"1\"} 1.5\n"
            "s{a=\"1\",quantile=\"0.5\"} 1\n"
            "s{a=\"1\",quantile=\"0.99\"} 0.1\n");
  EXPECT_EQ(Write(FromPrometheus({family})), Reference({family}));
}

TEST(FromPrometheus, IgnoresTimestamps) {
  ClientMetric metric = GaugeMetric({}, 1);
  metric.timestamp_ms = 1700000000000;
  MetricFamily family{"g", "", MetricType::Gauge, {metric}};
  EXPECT_EQ(Write(FromPrometheus({family})), "# TYPE g gauge\ng 1\n");
}

TEST(FromPrometheus, KeepsNameHelpKindAndSampleCount) {
  std::vector<Family> converted = FromPrometheus(ReferenceFamilies());
  ASSERT_EQ(converted.size(), 7u);
  EXPECT_EQ(converted[0].name, "pg_stat_database_xact_commit_total");
  EXPECT_EQ(converted[0].kind, MetricKind::Counter);
  EXPECT_EQ(converted[0].size(), 10u);
  EXPECT_EQ(converted[1].kind, MetricKind::Gauge);
  EXPECT_EQ(converted[2].kind, MetricKind::Untyped);
  EXPECT_EQ(converted[3].kind, MetricKind::Histogram);
  EXPECT_EQ(converted[3].size(), 7u + 4u + 3u);  // count, sum and buckets incl. +Inf of three metrics
  EXPECT_EQ(converted[4].kind, MetricKind::Summary);
  EXPECT_EQ(converted[5].size(), 0u);
}

}  // namespace
}  // namespace pgpulse::collectors

namespace pgpulse::collectors {
namespace {

TEST(LabelUtf8Test, InvalidBytesBecomeReplacementCharactersAndValidTextIsKept) {
  size_t replaced = 0;
  const std::string valid = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  EXPECT_EQ(ToValidUtf8(valid, replaced), valid);
  EXPECT_EQ(replaced, 0u);
  // LATIN1 é, a lone continuation byte, an overlong '/', a surrogate, a truncated sequence.
  EXPECT_EQ(ToValidUtf8("caf\xe9", replaced), "caf\xef\xbf\xbd");
  EXPECT_EQ(ToValidUtf8("\x80", replaced), "\xef\xbf\xbd");
  EXPECT_EQ(ToValidUtf8("\xc0\xaf", replaced), "\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(ToValidUtf8("\xed\xa0\x80", replaced), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(ToValidUtf8("x\xe2\x82", replaced), "x\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(replaced, 9u);
  uint64_t before = InvalidUtf8Replacements();
  std::string out;
  AppendLabel(out, "relname", "bad\xff\"", true);
  EXPECT_EQ(out, "relname=\"bad\xef\xbf\xbd\\\"\"");
  EXPECT_EQ(InvalidUtf8Replacements(), before + 1);
}

}  // namespace
}  // namespace pgpulse::collectors
