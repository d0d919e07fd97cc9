// The attribute syntax both sides of a SCRAM exchange read (RFC 5802 §7): "<letter>=<value>", comma
// separated.
#pragma once

#include <optional>
#include <string_view>

namespace sluice::auth {

// Reads "<attribute>=<value>" up to the next ',' (consumed) or the end; nullopt (nothing consumed)
// when `input` does not start with that attribute.
inline std::optional<std::string_view> read_scram_attribute(std::string_view& input, char attribute) {
  if (input.size() < 2 || input[0] != attribute || input[1] != '=') return std::nullopt;
  const std::size_t comma = input.find(',');
  const std::string_view value =
      input.substr(2, comma == std::string_view::npos ? std::string_view::npos : comma - 2);
  input.remove_prefix(comma == std::string_view::npos ? input.size() : comma + 1);
  return value;
}

}  // namespace sluice::auth
