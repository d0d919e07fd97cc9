// The servers of one (database, user) on one worker. Clients with different
// startup settings get pools of their own (PoolKey), but pool_size bounds their
// servers together, as an operator expects of a database's pool: a pool whose
// clients wait while the budget is spent takes an idle server of a sibling.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace sluice::pool {

class Pool;

struct ServerBudget {
  std::size_t servers = 0;   // connecting, idle, active or resetting, across the pools
  std::vector<Pool*> pools;  // the pools that share it

  void join(Pool* pool) { pools.push_back(pool); }
  void leave(Pool* pool) { pools.erase(std::remove(pools.begin(), pools.end(), pool), pools.end()); }
};

}  // namespace sluice::pool
