// The one read buffer of a loop thread. Bytes read are forwarded before the
// next read, so connections need no read buffers of their own.
#pragma once

#include <cstdint>
#include <span>

namespace sluice::net {

inline constexpr std::size_t kScratchSize = std::size_t{64} * 1024;

namespace detail {
// The buffer is on the heap, not in thread-local storage: there its 64 KiB would lie between the
// thread pointer (whose page most stretches between system calls touch) and libc's own
// thread-locals (malloc's cache, errno), a page more for each stretch that touches both. The
// pointer is constant-initialised (constinit), so reading it needs no guard on the read path.
constinit inline thread_local std::uint8_t* scratch = nullptr;
[[gnu::cold, gnu::noinline]] std::uint8_t* allocate_scratch();
}  // namespace detail

inline std::span<std::uint8_t> scratch_buffer() {
  std::uint8_t* buffer = detail::scratch;
  if (buffer == nullptr) [[unlikely]]
    buffer = detail::allocate_scratch();
  return {buffer, kScratchSize};
}

}  // namespace sluice::net
