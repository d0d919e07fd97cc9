// The lines of a small text file with their numbers, for the parsers whose errors name the line.
#pragma once

#include <string_view>

namespace sluice::auth {

// Space within a line ('\r' too: files written on Windows), as both file formats separate fields.
inline bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

class TextLines {
 public:
  explicit TextLines(std::string_view text) : rest_(text) {}

  // The next line, without its '\n'; false after the last.
  bool next(std::string_view& line) {
    if (rest_.empty()) return false;
    ++number_;
    const std::size_t newline = rest_.find('\n');
    line = rest_.substr(0, newline);
    rest_.remove_prefix(newline == std::string_view::npos ? rest_.size() : newline + 1);
    return true;
  }
  // 1-based: the line next() gave last.
  [[nodiscard]] int number() const { return number_; }

 private:
  std::string_view rest_;
  int number_ = 0;
};

}  // namespace sluice::auth
