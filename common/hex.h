// Lower-case hex of bytes, and back: how PostgreSQL's encode(..., 'hex') writes them, and how the
// live-upgrade handover carries byte strings in JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice {

void append_hex(std::string& out, std::string_view bytes);
inline std::string to_hex(std::string_view bytes) {
  std::string hex;
  hex.reserve(bytes.size() * 2);
  append_hex(hex, bytes);
  return hex;
}
// nullopt when `hex` is not an even number of lower-case hex digits.
std::optional<std::string> from_hex(std::string_view hex);

}  // namespace sluice
