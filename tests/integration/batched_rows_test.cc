// A large result is read through a cursor, a batch of rows at a time, and mapped batch by batch:
// the same families as the query run whole, the same limits and errors, one timeout for all
// fetches together; small results go back to running whole as prepared statements.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "collectors/definition.h"
#include "collectors/exposition.h"
#include "collectors/postgres_session.h"
#include "collectors/runner.h"
#include "tests/harness/postgres_server.h"

namespace pgpulse::testing {
namespace {

using collectors::CollectorRun;
using collectors::PlannedCollector;

constexpr char kDefinitions[] = R"(collectors:
  - name: many
    help: More rows than one batch, with labels repeating across batches.
    max_series: 1000000
    max_rows: 1000000
    sql: SELECT (g % 9000)::text AS id, g AS v, g % 7 AS w FROM generate_series(1, 12345) g ORDER BY g
    columns:
      id: label
      v: {gauge: pg_test_many_v, help: V.}
      w: {counter: pg_test_many_w_total, help: W.}
  - name: few
    help: Fewer rows than one batch.
    sql: SELECT g::text AS id, g AS v FROM generate_series(1, 3) g
    columns:
      id: label
      v: {gauge: pg_test_few, help: V.}
  - name: shown
    help: A query a cursor cannot have.
    sql: SHOW max_connections
    columns:
      max_connections: {gauge: pg_test_max_connections, help: Setting.}
  - name: top
    help: Limits itself; more rows than one batch are kept.
    max_rows: 11000
    max_series: 1000000
    sql: |
      SELECT g::text AS id, g AS v, count(*) OVER () AS total
        FROM generate_series(1, 12345) g ORDER BY g LIMIT $1
    columns:
      id: label
      v: {gauge: pg_test_top, help: V.}
      total: rows_before_limit
  - name: bad_late
    help: An unusable value in the second batch.
    max_series: 1000000
    sql: SELECT g::text AS id, CASE WHEN g = 7001 THEN 'lots' ELSE g::text END AS v FROM generate_series(1, 8000) g
    columns:
      id: label
      v: {gauge: pg_test_bad, help: V.}
  - name: slow
    help: Each batch takes about half the timeout.
    max_series: 1000000
    sql: |
      SELECT g::text AS id, CASE WHEN g % 10 = 0 THEN pg_sleep(0.001)::text END AS pause, g AS v
        FROM generate_series(1, 15000) g
    columns:
      id: label
      pause: ignore
      v: {gauge: pg_test_slow, help: V.}
)";

class BatchedRowsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pg_ = PostgresServer::Start().release();
    auto loaded = collectors::LoadDefinitions({collectors::Source{"batched.yaml", kDefinitions}});
    ASSERT_TRUE(loaded.ok()) << loaded.errors.front();
    definitions_ = new std::vector<collectors::Definition>(loaded.definitions);
  }
  static void TearDownTestSuite() {
    delete definitions_;
    delete pg_;
  }

  static PlannedCollector Planned(const std::string& name) {
    for (const auto& d : *definitions_) {
      if (d.name == name) return PlannedCollector{&d, &d.variants.front()};
    }
    ADD_FAILURE() << "no definition " << name;
    return PlannedCollector{&definitions_->front(), &definitions_->front().variants.front()};
  }

  static std::unique_ptr<collectors::PostgresSession> Open() {
    return collectors::PostgresSession::Open(pg_->dsn(), collectors::SessionOptions{});
  }

  static std::string Text(const CollectorRun& run) {
    std::vector<const collectors::Family*> families;
    for (const auto& f : run.mapped.families) families.push_back(&f);
    std::string out;
    collectors::WriteExposition(out, families);
    return out;
  }

  // The same query run whole, on a connection of its own.
  static CollectorRun Whole(const PlannedCollector& p, const collectors::Labels& labels = {}) {
    pqxx::connection conn(pg_->dsn());
    collectors::RowReading whole;
    whole.batch_rows = 0;
    return collectors::RunCollector(conn, p, std::chrono::seconds(10), labels, {}, whole);
  }

  // Equal texts, without printing 10,000 lines when they are not.
  static ::testing::AssertionResult SameText(const CollectorRun& a, const CollectorRun& b) {
    const std::string x = Text(a), y = Text(b);
    if (x == y) return ::testing::AssertionSuccess();
    size_t at = 0;
    while (at < x.size() && at < y.size() && x[at] == y[at]) ++at;
    return ::testing::AssertionFailure() << "texts of " << x.size() << " and " << y.size() << " bytes differ at byte "
                                         << at << ": '" << x.substr(at, 80) << "' vs '" << y.substr(at, 80) << "'";
  }

  static PostgresServer* pg_;
  static std::vector<collectors::Definition>* definitions_;
};

PostgresServer* BatchedRowsTest::pg_ = nullptr;
std::vector<collectors::Definition>* BatchedRowsTest::definitions_ = nullptr;

TEST_F(BatchedRowsTest, ALargeResultIsReadInBatchesAndMapsAsTheWholeResultDoes) {
  auto session = Open();
  const PlannedCollector many = Planned("many");
  const CollectorRun whole = Whole(many, {{"datname", "postgres"}});
  ASSERT_TRUE(whole.success) << whole.error;
  EXPECT_FALSE(whole.batched);
  for (int run = 0; run < 2; ++run) {
    CollectorRun batched = session->Run(many, std::chrono::seconds(10), {{"datname", "postgres"}}, {});
    ASSERT_TRUE(batched.success) << batched.error;
    EXPECT_TRUE(batched.batched) << "run " << run << ": 12,345 rows are more than one batch";
    EXPECT_EQ(batched.rows, 12345u);
    // 9,000 label sets; rows 9,000 to 12,345 repeat labels first seen in the first batch.
    EXPECT_EQ(batched.mapped.series, 18000u);
    EXPECT_EQ(batched.mapped.dropped_duplicates, 3345u * 2);
    EXPECT_TRUE(SameText(batched, whole));
  }
}

TEST_F(BatchedRowsTest, ASmallResultRunsWholeAsAPreparedStatementOnceItsSizeIsKnown) {
  auto session = Open();
  const PlannedCollector few = Planned("few");
  CollectorRun first = session->Run(few, std::chrono::seconds(10), {}, {});
  ASSERT_TRUE(first.success) << first.error;
  EXPECT_TRUE(first.batched) << "a query not run here yet is read in batches";
  CollectorRun second = session->Run(few, std::chrono::seconds(10), {}, {});
  ASSERT_TRUE(second.success) << second.error;
  EXPECT_FALSE(second.batched);
  EXPECT_TRUE(SameText(first, second));
  EXPECT_EQ(second.mapped.series, 3u);
}

TEST_F(BatchedRowsTest, AQueryACursorCannotHaveRunsWhole) {
  auto session = Open();
  const PlannedCollector shown = Planned("shown");
  for (int run = 0; run < 2; ++run) {
    CollectorRun r = session->Run(shown, std::chrono::seconds(10), {}, {});
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_FALSE(r.batched);
    EXPECT_EQ(Text(r),
              "# HELP pg_test_max_connections Setting.\n# TYPE pg_test_max_connections gauge\n"
              "pg_test_max_connections " +
                  pg_->Query("SHOW max_connections") + "\n");
  }
  EXPECT_FALSE(Whole(shown).batched);
}

TEST_F(BatchedRowsTest, ASelfLimitingQueryCountsWhatItLeftOutAcrossBatches) {
  auto session = Open();
  CollectorRun r = session->Run(Planned("top"), std::chrono::seconds(10), {}, {});
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_TRUE(r.batched);
  EXPECT_EQ(r.rows, 11000u);
  EXPECT_EQ(r.mapped.series, 11000u);
  EXPECT_EQ(r.mapped.dropped_limit, 1345u);
  EXPECT_TRUE(SameText(r, Whole(Planned("top"))));
}

TEST_F(BatchedRowsTest, AnUnusableValueInALaterBatchNamesItsRowInTheWholeResult) {
  auto session = Open();
  CollectorRun r = session->Run(Planned("bad_late"), std::chrono::seconds(10), {}, {});
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.batched);
  EXPECT_EQ(r.error, "column 'v' has value 'lots' in row 7001, which is not a number");
  EXPECT_TRUE(r.mapped.families.empty());
  EXPECT_EQ(Whole(Planned("bad_late")).error, r.error);
  // The session is still usable, and nothing of the failed run is left open on it.
  CollectorRun after = session->Run(Planned("few"), std::chrono::seconds(10), {}, {});
  EXPECT_TRUE(after.success) << after.error;
}

TEST_F(BatchedRowsTest, OneTimeoutCoversEveryFetch) {
  // 15,000 rows pausing 1 ms on every tenth: three batches of about 0.5 s each. With 0.8 s the
  // first fetch finishes and the second is cancelled by the server when the 0.8 s are up; a
  // timeout per fetch would let the whole run take 1.5 s and succeed.
  auto session = Open();
  const PlannedCollector slow = Planned("slow");
  CollectorRun r = session->Run(slow, std::chrono::milliseconds(800), {}, {});
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.batched);
  EXPECT_NE(r.error.find("timed out after 800ms (cancelled on the server)"), std::string::npos) << r.error;
  EXPECT_LT(r.duration_seconds, 1.2);
  EXPECT_GE(r.duration_seconds, 0.7);
  EXPECT_FALSE(r.connection_lost);
  // Given the time, the same run succeeds.
  CollectorRun enough = session->Run(slow, std::chrono::seconds(10), {}, {});
  EXPECT_TRUE(enough.success) << enough.error.substr(0, 300);
  EXPECT_EQ(enough.mapped.series, 15000u);
}

}  // namespace
}  // namespace pgpulse::testing
