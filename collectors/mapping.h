#pragma once
// Turns a query result into metric families, per a definition's columns.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collectors/definition.h"
#include "collectors/family.h"

namespace pgpulse::collectors {

// A query result as text cells, row-major; cells point into storage the
// caller keeps alive (a pqxx::result, or strings in a test).
struct Cell {
  const char* data = nullptr;
  size_t size = 0;
  bool null = true;
  std::string_view view() const { return std::string_view(data, size); }
};

struct TableView {
  std::vector<std::string> columns;
  size_t rows = 0;
  std::vector<Cell> cells;  // rows * columns.size(), unless row_source reads them
  // Reads one row's cells where the result already is (a pqxx::result) instead of a copy of every
  // cell: at 30,000 tables that copy was the largest allocation of a collection (25 MB). The last
  // row read is kept, since the mapping reads a row's cells one after another.
  std::function<void(size_t row, std::vector<Cell>& out)> row_source;
  mutable size_t cached_row = SIZE_MAX;
  mutable std::vector<Cell> cached_cells;

  Cell at(size_t row, size_t col) const {
    if (!row_source) return cells[row * columns.size() + col];
    if (row != cached_row) {
      row_source(row, cached_cells);
      cached_row = row;
    }
    return cached_cells[col];
  }
};

struct MappedResult {
  std::vector<Family> families;   // one per metric column, in column order, then the info metric
  size_t series = 0;              // samples kept
  size_t dropped_duplicates = 0;  // samples whose label set was already seen
  size_t dropped_limit = 0;       // samples beyond the definition's max_rows or max_series
  std::string error;              // non-empty: the result could not be mapped at all
};

// Maps a result that arrives in batches (a cursor's FETCHes) to families batch by batch, so that
// only one batch of a large result is held at a time; the result is the same as MapRows over all
// rows at once (row numbers in errors count from the first batch). The first batch's columns
// decide the layout, and every later batch must have the same. `extra_labels`: as for MapRows.
class RowMapper {
 public:
  // `def` must outlive the mapper.
  RowMapper(const Definition& def, std::vector<std::pair<std::string, std::string>> extra_labels);
  RowMapper(Definition&&, std::vector<std::pair<std::string, std::string>>) = delete;
  ~RowMapper();
  RowMapper(const RowMapper&) = delete;
  RowMapper& operator=(const RowMapper&) = delete;

  // Whether `def`'s rows can be mapped in batches: not a pivot or a name_suffix definition,
  // which need every row at once (they are small: one row per setting or key).
  static bool Batches(const Definition& def);
  // Room for `rows` rows in all, reserved when the first batch comes: the size of the last
  // result, so that a result read in batches is not grown (and copied) batch after batch.
  void Expect(size_t rows);
  // False once the rows cannot be mapped (Finish says why); later batches are then ignored.
  bool Add(const TableView& batch);
  // Every added row's families; with an error (and no families) if a batch could not be mapped
  // or none was added.
  MappedResult Finish();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// `extra_labels` (e.g. datname for database-scoped collectors) come first in
// every sample's label set, before the definition's label columns.
MappedResult MapRows(const Definition& def, const TableView& table,
                     const std::vector<std::pair<std::string, std::string>>& extra_labels);

// Parses a PostgreSQL text value as a sample value: numbers, NaN/Infinity,
// and booleans t/f as 1/0.
std::optional<double> ParseSampleValue(std::string_view text);

// A timestamptz as PostgreSQL writes it ("2024-05-01 12:00:00.5+02") as Unix seconds, for
// foreign_names definitions (postgres_exporter serves a timestamp column that way); nullopt otherwise.
std::optional<double> ParseTimestampSeconds(std::string_view text);

}  // namespace pgpulse::collectors
