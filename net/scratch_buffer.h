// The one read buffer of a loop thread. Bytes read are forwarded before the
// next read, so connections need no read buffers of their own.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace sluice::net {

inline constexpr std::size_t kScratchSize = std::size_t{64} * 1024;

inline std::span<std::uint8_t> scratch_buffer() {
  thread_local std::array<std::uint8_t, kScratchSize> buffer;
  return buffer;
}

}  // namespace sluice::net
