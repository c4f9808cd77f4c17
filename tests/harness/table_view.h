#pragma once
// A collectors::TableView over cells the test writes out, for unit tests of
// mapping and of columns the engine adds (no server).

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "collectors/family.h"
#include "collectors/mapping.h"

namespace pgpulse::testing {

// Keeps cell storage alive for a TableView; std::nullopt is SQL NULL.
struct Table {
  std::vector<std::vector<std::optional<std::string>>> rows;
  collectors::TableView view;
  Table(std::vector<std::string> columns, std::vector<std::vector<std::optional<std::string>>> r) : rows(std::move(r)) {
    view.columns = std::move(columns);
    view.rows = rows.size();
    for (auto& row : rows) {
      for (auto& cell : row) {
        collectors::Cell c;
        c.null = !cell.has_value();
        if (cell) {
          c.data = cell->data();
          c.size = cell->size();
        }
        view.cells.push_back(c);
      }
    }
  }
};

// Every sample of `families` as "name{labels} value\n", values with %g.
inline std::string Samples(const std::vector<collectors::Family>& families) {
  std::string s;
  for (const auto& f : families) {
    for (size_t i = 0; i < f.size(); ++i) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %g\n", f.values[i]);
      s += f.name + std::string(f.suffix(i)) + buf;
    }
  }
  return s;
}

}  // namespace pgpulse::testing
