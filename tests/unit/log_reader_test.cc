// The log source's parts that need no server: csvlog and jsonlog parsing (with lines captured
// from PostgreSQL 15.18: a statement timeout, a division by zero, a deadlock, an unknown role,
// a statement with a newline and quotes), the counts, and following a file the test writes.

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "agent/sources/log_reader.h"
#include "agent/sources/logs.h"

namespace pgpulse::agent::sources {
namespace {

std::string ReadData(const std::string& name) {
  std::ifstream in(std::string(PGPULSE_SOURCE_DIR) + "/tests/unit/data/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Parsed {
  std::vector<LogRecord> records;
  LogCounts counts;
};

void FeedAll(LogParser& p, std::string_view bytes, Parsed& out) {
  p.Feed(bytes, [&](const LogRecord& r) {
    out.records.push_back(r);
    out.counts.Add(r);
  });
}

uint64_t Kind(const LogCounts& c, const std::string& name) {
  auto it = c.kinds().find(name);
  return it == c.kinds().end() ? 0 : it->second;
}

uint64_t Messages(const LogCounts& c, const std::string& severity, const std::string& cls) {
  auto it = c.messages().find({severity, cls});
  return it == c.messages().end() ? 0 : it->second;
}

void ExpectCapturedCounts(const Parsed& p, const std::string& format) {
  ASSERT_EQ(p.records.size(), 11u) << format;
  EXPECT_EQ(Messages(p.counts, "LOG", "00"), 6u) << format;
  EXPECT_EQ(Messages(p.counts, "ERROR", "57"), 1u) << format;
  EXPECT_EQ(Messages(p.counts, "ERROR", "22"), 2u) << format;
  EXPECT_EQ(Messages(p.counts, "ERROR", "40"), 1u) << format;
  EXPECT_EQ(Messages(p.counts, "FATAL", "28"), 1u) << format;
  EXPECT_EQ(Kind(p.counts, "statement_timeouts"), 1u) << format;
  EXPECT_EQ(Kind(p.counts, "deadlocks"), 1u) << format;
  EXPECT_EQ(Kind(p.counts, "authentication_failures"), 1u) << format;
  EXPECT_EQ(Kind(p.counts, "disk_full_errors"), 0u) << format;
  EXPECT_EQ(p.records[8].message, "deadlock detected") << format;
  EXPECT_EQ(p.records[9].message, "role \"nosuchuser\" does not exist") << format;
}

TEST(LogParser, CountsCapturedJsonlog) {
  const std::string text = ReadData("postgresql-15-jsonlog.json");
  LogParser parser(LogFormat::Json);
  Parsed p;
  FeedAll(parser, text, p);
  EXPECT_EQ(parser.malformed(), 0u);
  ExpectCapturedCounts(p, "jsonlog");
  // jsonlog leaves out state_code 00000; csvlog writes it.
  EXPECT_EQ(p.records[0].severity, "LOG");
  EXPECT_EQ(p.records[0].sqlstate, "00000");
}

TEST(LogParser, CountsCapturedCsvlogWithQuotedNewlines) {
  const std::string text = ReadData("postgresql-15-csvlog.csv");
  LogParser parser(LogFormat::Csv);
  Parsed p;
  FeedAll(parser, text, p);
  EXPECT_EQ(parser.malformed(), 0u);
  ExpectCapturedCounts(p, "csvlog");
  EXPECT_EQ(p.records[3].message, "listening on Unix socket \"/tmp/logcap/.s.PGSQL.54991\"");
}

TEST(LogParser, SplitAnywhereGivesTheSameRecords) {
  for (LogFormat f : {LogFormat::Csv, LogFormat::Json}) {
    const std::string text = ReadData(f == LogFormat::Csv ? "postgresql-15-csvlog.csv" : "postgresql-15-jsonlog.json");
    std::mt19937 rng(17);
    LogParser parser(f);
    Parsed p;
    for (size_t at = 0; at < text.size();) {
      size_t n = std::min<size_t>(text.size() - at, 1 + rng() % 7);
      FeedAll(parser, std::string_view(text).substr(at, n), p);
      at += n;
    }
    EXPECT_EQ(parser.malformed(), 0u) << LogFormatName(f);
    ExpectCapturedCounts(p, LogFormatName(f));
  }
}

TEST(LogParser, PartialLastLineWaitsUntilComplete) {
  for (LogFormat f : {LogFormat::Csv, LogFormat::Json}) {
    const std::string text = ReadData(f == LogFormat::Csv ? "postgresql-15-csvlog.csv" : "postgresql-15-jsonlog.json");
    ASSERT_EQ(text.back(), '\n');
    LogParser parser(f);
    Parsed p;
    FeedAll(parser, std::string_view(text).substr(0, text.size() - 1), p);
    EXPECT_EQ(p.records.size(), 10u) << LogFormatName(f) << ": the last record is not complete yet";
    EXPECT_GT(parser.pending_bytes(), 0u);
    FeedAll(parser, "\n", p);
    EXPECT_EQ(p.records.size(), 11u) << LogFormatName(f);
    EXPECT_EQ(parser.malformed(), 0u);
  }
}

TEST(LogParser, MalformedAndBinaryLinesAreCountedNotPassedOn) {
  std::string garbage = "not json at all\n{\"error_severity\": 12}\n{broken\n\x01\x02\xff\xfe";
  garbage += std::string("\0\0\0", 3) + "\n[1,2]\n{}\n";
  LogParser json(LogFormat::Json);
  Parsed p;
  FeedAll(json, garbage, p);
  EXPECT_TRUE(p.records.empty());
  EXPECT_EQ(json.malformed(), 6u);
  // csvlog: too few fields, binary bytes; the next good record still counts.
  const std::string good = ReadData("postgresql-15-csvlog.csv");
  LogParser csv(LogFormat::Csv);
  Parsed q;
  FeedAll(csv, "a,b,c\n" + std::string("\x01\xff,\0\n", 5) + good.substr(0, good.find('\n') + 1), q);
  EXPECT_EQ(csv.malformed(), 2u);
  ASSERT_EQ(q.records.size(), 1u);
  EXPECT_EQ(q.records[0].severity, "LOG");
}

TEST(LogParser, HugeLinesStayBounded) {
  // A 20 MiB statement in a jsonlog line after the fields we read, and in a csvlog field.
  const std::string big(20 * 1024 * 1024, 'x');
  LogParser json(LogFormat::Json);
  Parsed p;
  FeedAll(json, "{\"error_severity\":\"ERROR\",\"state_code\":\"40001\",\"message\":\"could not serialize\",", p);
  for (int i = 0; i < 20; ++i) {
    FeedAll(json, (i == 0 ? "\"statement\":\"" : "") + big.substr(0, 1024 * 1024), p);
    EXPECT_LE(json.pending_bytes(), kMaxJsonLineBytes);
  }
  FeedAll(json, "\"}\n", p);
  ASSERT_EQ(p.records.size(), 1u);
  EXPECT_EQ(Kind(p.counts, "serialization_failures"), 1u);

  // A huge message: kept to kMaxFieldBytes.
  FeedAll(json, "{\"error_severity\":\"PANIC\",\"state_code\":\"53100\",\"message\":\"" + big + "\"}\n", p);
  ASSERT_EQ(p.records.size(), 2u);
  EXPECT_EQ(p.records[1].message.size(), kMaxFieldBytes);
  EXPECT_EQ(Kind(p.counts, "disk_full_errors"), 1u);

  LogParser csv(LogFormat::Csv);
  Parsed q;
  FeedAll(csv, "t,,,1,,s,1,,t,,0,ERROR,53200,\"out of memory: " + big + "\",\"" + big + "\"", q);
  EXPECT_LE(csv.pending_bytes(), 3 * kMaxFieldBytes);
  FeedAll(csv, "\n", q);
  ASSERT_EQ(q.records.size(), 1u);
  EXPECT_EQ(Kind(q.counts, "out_of_memory_errors"), 1u);
}

TEST(LogCounts, KindsNeedTheRightSqlstateAndMessage) {
  auto kinds = [](const std::string& state, const std::string& message) {
    std::string out;
    for (const char* k : KindsOf({"ERROR", state, message})) out += std::string(out.empty() ? "" : ",") + k;
    return out;
  };
  EXPECT_EQ(kinds("57014", "canceling statement due to statement timeout"), "statement_timeouts");
  EXPECT_EQ(kinds("57014", "canceling statement due to user request"), "");
  EXPECT_EQ(kinds("40P01", "deadlock detected"), "deadlocks");
  EXPECT_EQ(kinds("28P01", "password authentication failed for user \"bob\""), "authentication_failures");
  EXPECT_EQ(kinds("28000", "no pg_hba.conf entry for host"), "authentication_failures");
  EXPECT_EQ(kinds("53200", "out of memory"), "out_of_memory_errors");
  EXPECT_EQ(kinds("40001", "could not serialize access due to concurrent update"), "serialization_failures");
  EXPECT_EQ(kinds("53100", "could not extend file \"base/5/16384\": No space left on device"), "disk_full_errors");
  EXPECT_EQ(kinds("58030", "could not write to file \"pg_wal/xlogtemp.1\": No space left on device"),
            "disk_full_errors");
  EXPECT_EQ(kinds("22012", "division by zero"), "");
}

TEST(LogCounts, SeriesAreBounded) {
  LogCounts c;
  c.Add({"ERROR", "bad", ""});
  for (int i = 0; i < 36 * 36; ++i) {
    const char* digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string state = {digits[i / 36], digits[i % 36], '0', '0', '0'};
    c.Add({i % 2 ? "ERROR" : "SOMETHING ELSE", state, ""});
  }
  EXPECT_LE(c.messages().size(), LogCounts::kMaxSeries + 2);
  uint64_t total = 0;
  for (const auto& [key, n] : c.messages()) total += n;
  EXPECT_EQ(total, 36u * 36 + 1);
  EXPECT_EQ(Messages(c, "ERROR", ""), 1u);
  EXPECT_GT(Messages(c, "other", "other"), 0u);
}

// A log file the test writes, followed like the server's.
class LogTailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgpulse-logtail-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  void Append(const std::string& name, const std::string& text) { std::ofstream(Path(name), std::ios::app) << text; }
  std::string Line(const std::string& severity, const std::string& state) {
    return "{\"error_severity\":\"" + severity + "\",\"state_code\":\"" + state + "\",\"message\":\"m\"}\n";
  }
  std::string dir_;
  LogTail tail_;
  LogCounts counts_;
};

TEST_F(LogTailTest, StartsAtTheEndThenCountsWhatIsAppended) {
  Append("a.json", Line("ERROR", "40P01") + Line("ERROR", "40P01"));
  ASSERT_EQ(tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_).reason, "");
  EXPECT_EQ(Kind(counts_, "deadlocks"), 0u) << "history is not counted";
  Append("a.json", Line("ERROR", "40P01"));
  tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_);
  EXPECT_EQ(Kind(counts_, "deadlocks"), 1u);
  // A partial line is counted once it is complete.
  std::string line = Line("FATAL", "28P01");
  Append("a.json", line.substr(0, 20));
  tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_);
  EXPECT_EQ(Kind(counts_, "authentication_failures"), 0u);
  Append("a.json", line.substr(20));
  tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_);
  EXPECT_EQ(Kind(counts_, "authentication_failures"), 1u);
  EXPECT_EQ(tail_.malformed(), 0u);
}

TEST_F(LogTailTest, StartingInTheMiddleOfALineSkipsItsRest) {
  const std::string line = Line("ERROR", "40P01");
  Append("a.json", line + line.substr(0, 25));
  tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_);
  Append("a.json", line.substr(25) + line);
  tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_);
  EXPECT_EQ(Kind(counts_, "deadlocks"), 1u) << "only the line written after the start";
  EXPECT_EQ(tail_.malformed(), 0u) << "the rest of the line in progress is not a malformed record";
}

TEST_F(LogTailTest, FollowsRotationAndTruncation) {
  Append("a.json", "");
  tail_.Read(Path("a.json"), LogFormat::Json, 1 << 20, counts_);
  Append("a.json", Line("ERROR", "40P01"));
  Append("b.json", Line("ERROR", "40P01") + Line("ERROR", "40P01"));
  // The current file is now b: the rest of a, then all of b.
  tail_.Read(Path("b.json"), LogFormat::Json, 1 << 20, counts_);
  EXPECT_EQ(Kind(counts_, "deadlocks"), 3u);
  EXPECT_EQ(tail_.rotations(), 1u);
  // Truncated (log_truncate_on_rotation reusing a name): read again from the start.
  std::ofstream(Path("b.json"), std::ios::trunc) << Line("ERROR", "40001");
  tail_.Read(Path("b.json"), LogFormat::Json, 1 << 20, counts_);
  EXPECT_EQ(tail_.truncations(), 1u);
  EXPECT_EQ(Kind(counts_, "serialization_failures"), 1u);
  EXPECT_EQ(tail_.Read(Path("gone.json"), LogFormat::Json, 1 << 20, counts_).reason, "not_found");
}

TEST_F(LogTailTest, ReadsAtMostTheBudgetAndCatchesUpLater) {
  Append("a.json", "");
  tail_.Read(Path("a.json"), LogFormat::Json, 65536, counts_);
  std::string many;
  for (int i = 0; i < 5000; ++i) many += Line("ERROR", "40P01");
  Append("a.json", many);
  tail_.Read(Path("a.json"), LogFormat::Json, 65536, counts_);
  EXPECT_EQ(tail_.read_bytes(), 65536u);
  EXPECT_EQ(tail_.unread_bytes(), many.size() - 65536);
  EXPECT_LT(Kind(counts_, "deadlocks"), 5000u);
  while (tail_.unread_bytes() > 0) tail_.Read(Path("a.json"), LogFormat::Json, 65536, counts_);
  EXPECT_EQ(Kind(counts_, "deadlocks"), 5000u);
  EXPECT_EQ(tail_.malformed(), 0u);
}

}  // namespace
}  // namespace pgpulse::agent::sources
