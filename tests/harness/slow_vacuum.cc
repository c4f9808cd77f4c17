#include "tests/harness/slow_vacuum.h"

#include <pqxx/pqxx>

#include "tests/harness/polling.h"

namespace pgpulse::testing {

SlowVacuum::SlowVacuum(const PostgresServer& pg, const std::string& table) : pg_(pg) {
  pg.Exec("CREATE TABLE " + table + " WITH (autovacuum_enabled = off) AS " +
          "SELECT g, repeat('v', 100) AS payload FROM generate_series(1, 20000) g");
  pg.Exec("DELETE FROM " + table + " WHERE g % 2 = 0");
  std::promise<int> pid;
  std::future<int> pid_known = pid.get_future();
  done_ = std::async(std::launch::async, [dsn = pg.dsn(), table, &pid] {
    pqxx::connection c(dsn);
    pqxx::nontransaction tx(c);
    pid.set_value(tx.exec("SELECT pg_backend_pid()")[0][0].as<int>());
    tx.exec("SET vacuum_cost_delay = 100");
    tx.exec("SET vacuum_cost_limit = 1");
    try {
      tx.exec("VACUUM " + table);
    } catch (const pqxx::sql_error&) {
      // Cancelled by the destructor.
    }
  });
  pid_ = pid_known.get();
}

bool SlowVacuum::WaitScanning() {
  const std::string progress = "SELECT 1 FROM pg_stat_progress_vacuum WHERE pid = " + std::to_string(pid_) +
                               " AND phase = 'scanning heap'";
  return PollUntil([&] { return !pg_.Query(progress).empty(); });
}

SlowVacuum::~SlowVacuum() {
  try {
    pg_.Exec("SELECT pg_cancel_backend(" + std::to_string(pid_) + ")");
  } catch (...) {
  }
  done_.wait();
}

}  // namespace pgpulse::testing
