#include "tests/integration/test_tables.h"

#include <gtest/gtest.h>

#include <exception>
#include <utility>

namespace harness {

Table::Table(std::string name, const std::string& columns)
    : name_(std::move(name)), direct_(connect(postgres().conninfo())) {
  PQsetNoticeProcessor(
      direct_.get(), [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
  exec_ok(direct_, "DROP TABLE IF EXISTS " + name_);
  exec_ok(direct_, "CREATE TABLE " + name_ + " (" + columns + ")");
}

Table::~Table() {
  try {
    exec_ok(direct_, "DROP TABLE IF EXISTS " + name_);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "dropping " << name_ << ": " << e.what();
  }
}

int Table::count() const { return std::stoi(scalar(direct_, "SELECT count(*) FROM " + name_)); }

}  // namespace harness
