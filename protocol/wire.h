// Big-endian integer access for the PostgreSQL v3 wire format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sluice::protocol {

using Bytes = std::span<const std::uint8_t>;

inline std::uint32_t read_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

inline std::uint16_t read_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

// Big-endian into the four bytes at `at`.
inline void write_u32(char* at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) at[i] = static_cast<char>(v >> (24 - 8 * i));
}

inline void append_u32(std::string& out, std::uint32_t v) {
  char bytes[4];
  write_u32(bytes, v);
  out.append(bytes, 4);
}

inline void append_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

inline Bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace sluice::protocol
