#include "pool/connection_counts.h"

#include <algorithm>

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

void ConnectionCount::start_starving(const void* pool) {
  const std::lock_guard lock(line_mutex_);
  std::erase(line_, pool);
  line_.push_back(pool);
  starving_pools_.store(static_cast<int>(line_.size()), std::memory_order_relaxed);
}

void ConnectionCount::stop_starving(const void* pool) {
  const std::lock_guard lock(line_mutex_);
  std::erase(line_, pool);
  starving_pools_.store(static_cast<int>(line_.size()), std::memory_order_relaxed);
}

int ConnectionCount::place_in_line(const void* pool) const {
  const std::lock_guard lock(line_mutex_);
  return static_cast<int>(std::find(line_.begin(), line_.end(), pool) - line_.begin());
}

}  // namespace sluice::pool
