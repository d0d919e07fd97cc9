#include "net/scratch_buffer.h"

#include <array>
#include <memory>

namespace sluice::net::detail {

std::uint8_t* allocate_scratch() {
  // Freed when the thread ends; the pointer is not read after that.
  thread_local const auto owner = std::make_unique<std::array<std::uint8_t, kScratchSize>>();
  scratch = owner->data();
  return scratch;
}

}  // namespace sluice::net::detail
