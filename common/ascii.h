// ASCII case folding: PostgreSQL folds only 'A'-'Z' when it matches keywords and setting names
// (scan.l, guc_name_compare), whatever the locale.
#pragma once

#include <string>
#include <string_view>

namespace sluice {

constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string ascii_lowered(std::string_view text) {
  std::string folded(text);
  for (char& c : folded) c = ascii_lower(c);
  return folded;
}

}  // namespace sluice
