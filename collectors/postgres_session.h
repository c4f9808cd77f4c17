#pragma once
// A session on a PostgreSQL server through libpqxx: the catalog queries that
// read its facts, databases and location, and collectors run by RunCollector.

#include <pqxx/connection>

#include <memory>
#include <string>
#include <unordered_map>

#include "collectors/session.h"

namespace pgpulse::collectors {

class PostgresSession : public Session {
 public:
  // Connects, asking for UTF-8 (see the .cc). Throws on failure.
  static std::unique_ptr<PostgresSession> Open(const std::string& conninfo, const SessionOptions& options);
  ~PostgresSession() override;

  bool usable() const override { return conn_ && conn_->is_open(); }
  ServerFacts ReadFacts(Millis timeout, std::string& database) override;
  bool has_databases() const override { return true; }
  std::vector<std::string> ListDatabases(Millis timeout) override;
  std::vector<std::string> ListNames(const std::string& sql, Millis timeout) override;
  std::set<std::string> ReadExtensions(Millis timeout) override;
  ServerLocation ReadLocation(Millis timeout) override;
  CollectorRun Run(const PlannedCollector& planned, Millis timeout, const Labels& extra_labels,
                   const FilesystemAccess& filesystem) override;

 private:
  PostgresSession(std::unique_ptr<pqxx::connection> conn, bool prepare) : conn_(std::move(conn)), prepare_(prepare) {}
  // Runs a catalog query; a broken connection becomes SessionLost.
  pqxx::result Catalog(const std::string& sql, Millis timeout);

  // Rows read through a cursor per FETCH (see RowReading): at 30,000 tables a per-table result
  // is about 20 MB in libpq's memory when held whole, and one batch about 3.5 MB.
  static constexpr size_t kBatchRows = 5000;

  std::unique_ptr<pqxx::connection> conn_;
  const bool prepare_;
  // Rows each collector's query returned on its last successful run here, by PreparedName.
  std::unordered_map<std::string, size_t> last_rows_;
};

}  // namespace pgpulse::collectors
