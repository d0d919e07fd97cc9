// Aligned text tables and the cell formatting sluicectl's views share. Every
// cell tolerates a missing or mistyped field by showing "-".
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cli {

class Table {
 public:
  enum class Align { left, right };
  struct Column {
    std::string header;
    Align align = Align::left;
  };

  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  void add_row(std::vector<std::string> cells);
  [[nodiscard]] bool empty() const { return rows_.empty(); }
  // Header line, then the rows; columns two spaces apart, no trailing blanks.
  void print(std::ostream& out) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// The value at a path of object keys, or nullptr when any step is missing.
const nlohmann::json* find_path(const nlohmann::json& root, std::initializer_list<std::string_view> path);

// Text from the daemon with control characters replaced, so a pool or user
// name cannot move the cursor or recolour the terminal.
std::string printable(std::string_view text);

// Cells: "-" when the field is missing, null or of an unexpected type.
std::string text_cell(const nlohmann::json* value);
std::string count_cell(const nlohmann::json* value);    // 42
std::string millis_cell(const nlohmann::json* value);   // 0.42 ms, 12.3 ms, 1.5 s, 2m05s
std::string seconds_cell(const nlohmann::json* value);  // as millis_cell, from seconds
std::string yes_no_cell(const nlohmann::json* value);

// Durations for humans, from seconds.
std::string format_duration(double seconds);

}  // namespace sluice::cli
