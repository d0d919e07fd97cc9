// Tables made directly in PostgreSQL (not through sluiced) for a test, and dropped afterwards.
#pragma once

#include <string>

#include "tests/integration/harness.h"

namespace harness {

// A table made directly in PostgreSQL (not through sluiced) and dropped afterwards.
class Table {
 public:
  explicit Table(std::string name, const std::string& columns = "id int PRIMARY KEY, note text");
  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const PgConn& direct() const { return direct_; }
  // Read directly from PostgreSQL: the truth, whatever sluiced says.
  [[nodiscard]] int count() const;

 private:
  std::string name_;
  PgConn direct_;
};

}  // namespace harness
