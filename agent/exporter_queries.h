#pragma once
// postgres_exporter's custom queries file (--extend.query-path, its queries.yaml), translated at
// load into collector definitions that produce the names postgres_exporter gives them:
//
//   NAMESPACE:                      -> collector pe_queries__<namespace>
//     query: SQL                    -> its sql, wrapped to add the `server` label ("host:port")
//     master: true                  -> scope server (else database: with discovery it runs in
//                                      every database, and the agent's datname label stands for a
//                                      LABEL column named datname, which is current_database())
//     cache_seconds: N              -> ttl
//     runonserver: ">=10.0.0 <14"   -> variants for those server versions ('||' for more ranges)
//     metrics:
//       - COLUMN: {usage: LABEL}         -> label COLUMN
//       - COLUMN: {usage: GAUGE}         -> gauge NAMESPACE_COLUMN (description is its help)
//       - COLUMN: {usage: COUNTER}       -> counter NAMESPACE_COLUMN
//       - COLUMN: {usage: MAPPEDMETRIC, mapping: {text: number}} -> gauge, the text mapped in SQL
//       - COLUMN: {usage: HISTOGRAM}     -> histogram NAMESPACE_COLUMN: COLUMN holds the bounds,
//                                           COLUMN_bucket, COLUMN_sum and COLUMN_count the rest
//       - COLUMN: {usage: DISCARD}       -> ignored
// Columns the list does not name are ignored (postgres_exporter serves a numeric one as an
// untyped NAMESPACE_COLUMN with help "Unknown metric").
//
// DURATION (a Go duration text) cannot be expressed and is an error, as is anything
// postgres_exporter would quietly ignore (an unknown key, a usage it does not know). Errors are
// "file:line:column: what".

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "collectors/embedded.h"

namespace pgpulse::agent {

struct TranslatedQueries {
  collectors::Source source;                   // the definitions, YAML in pgpulse's format (foreign names)
  std::map<std::string, std::string> origins;  // collector name -> file:line:column of its namespace
  std::string path;
  std::string sha256;  // of the file, hex, as postgres_exporter's pg_exporter_user_queries_load_error{hashsum}
};

// Reads and translates `path`; nullopt with `errors` when it cannot be read or translated whole.
std::optional<TranslatedQueries> TranslateQueriesFile(const std::string& path, std::vector<std::string>& errors);
// The same for text already read; `origin` names it in errors.
std::optional<TranslatedQueries> TranslateQueries(const std::string& text, const std::string& origin,
                                                  std::vector<std::string>& errors);

// "server_version_num" bounds of a postgres_exporter runonserver range (blang/semver syntax:
// comparators >=, >, <=, <, =, joined by spaces; alternatives joined by ||), as [min, max) pairs.
// nullopt and `error` for what it cannot read.
std::optional<std::vector<std::pair<int, int>>> ParseVersionRange(const std::string& range, std::string& error);

}  // namespace pgpulse::agent
