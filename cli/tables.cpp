#include "cli/tables.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sluice::cli {
namespace {

// Display width, counting UTF-8 code points (not exact for wide characters,
// but right for the names pools and users usually have).
std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(
      text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string printf_string(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string printf_string(const char* format, long long first, long long second) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, first, second);
  return buffer;
}

}  // namespace

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(columns_.size(), "-");
  for (auto& cell : cells) cell = printable(cell);
  rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> widths;
  for (const auto& column : columns_) widths.push_back(display_width(column.header));
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], display_width(row[i]));
  }
  const auto print_line = [&](const auto& cell_at) {
    std::string line;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      const std::string& cell = cell_at(i);
      const std::string padding(widths[i] - display_width(cell), ' ');
      if (i > 0) line += "  ";
      line += columns_[i].align == Align::right ? padding + cell : cell + padding;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  };
  print_line([&](std::size_t i) -> const std::string& { return columns_[i].header; });
  for (const auto& row : rows_) print_line([&](std::size_t i) -> const std::string& { return row[i]; });
}

const nlohmann::json* find_path(const nlohmann::json& root, std::initializer_list<std::string_view> path) {
  const nlohmann::json* current = &root;
  for (const auto key : path) {
    if (!current->is_object()) return nullptr;
    const auto found = current->find(key);
    if (found == current->end()) return nullptr;
    current = &*found;
  }
  return current;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    // C1 controls arrive as U+0080..U+009F: 0xC2 0x80..0x9F in UTF-8.
    if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      out += '?';
      ++i;
    } else if (c < 0x20 || c == 0x7F) {
      out += '?';
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string text_cell(const nlohmann::json* value) {
  if (value == nullptr || value->is_null()) return "-";
  if (value->is_string()) return printable(value->get_ref<const std::string&>());
  if (value->is_object() || value->is_array()) return "-";
  return value->dump();
}

std::string count_cell(const nlohmann::json* value) {
  if (value == nullptr) return "-";
  if (value->is_number_integer()) return value->dump();
  if (value->is_number_float()) {
    const double number = value->get<double>();
    return std::isfinite(number) ? printf_string("%.0f", number) : "-";
  }
  return "-";
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "-";
  const double magnitude = std::fabs(seconds);
  const char* sign = seconds < 0 ? "-" : "";
  if (magnitude < 0.01) return sign + printf_string("%.2f ms", magnitude * 1000);
  if (magnitude < 1) return sign + printf_string("%.1f ms", magnitude * 1000);
  if (magnitude < 60) return sign + printf_string("%.1f s", magnitude);
  const auto whole = static_cast<long long>(magnitude);
  if (whole < 3600) return sign + printf_string("%lldm%02llds", whole / 60, whole % 60);
  if (whole < 86400) return sign + printf_string("%lldh%02lldm", whole / 3600, whole % 3600 / 60);
  return sign + printf_string("%lldd%02lldh", whole / 86400, whole % 86400 / 3600);
}

std::string seconds_cell(const nlohmann::json* value) {
  if (value == nullptr || !value->is_number()) return "-";
  return format_duration(value->get<double>());
}

std::string millis_cell(const nlohmann::json* value) {
  if (value == nullptr || !value->is_number()) return "-";
  return format_duration(value->get<double>() / 1000);
}

std::string yes_no_cell(const nlohmann::json* value) {
  if (value == nullptr || !value->is_boolean()) return "-";
  return value->get<bool>() ? "yes" : "no";
}

}  // namespace sluice::cli
