#include "pool/connection_counts.h"

namespace sluice::pool {

bool ConnectionCount::try_take(int limit) {
  if (limit <= 0) {
    servers_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  int current = servers_.load(std::memory_order_relaxed);
  while (current < limit) {
    if (servers_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

}  // namespace sluice::pool
