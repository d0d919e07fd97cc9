// Server connections of one database, or of one user, counted across every pool and every worker:
// max_db_connections and max_user_connections span them all (README "Limits against PgBouncer's
// names"), so each count is one atomic that any worker's pool takes a place from.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

namespace sluice::pool {

class ConnectionCount {
 public:
  // One more server, unless the count is already at `limit` (0 = no limit).
  bool try_take(int limit);
  void give_back() { servers_.fetch_sub(1, std::memory_order_relaxed); }
  [[nodiscard]] int servers() const { return servers_.load(std::memory_order_relaxed); }
  // Pools whose clients wait while this count is at its limit: a pool holding more than its share of
  // the limit gives servers back (README "Fairness between users"), an idle pool all of its idle ones.
  void starving_changed(bool starving) {
    starving_pools_.fetch_add(starving ? 1 : -1, std::memory_order_relaxed);
  }
  [[nodiscard]] int starving_pools() const { return starving_pools_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> servers_{0};
  std::atomic<int> starving_pools_{0};
};

// Daemon-wide, shared by the workers: one count per database and per user, made on first use (a
// pool's creation, not the hot path). std::map nodes never move, so a pool keeps its reference.
class ConnectionCounts {
 public:
  ConnectionCount& database(const std::string& name) { return find(databases_, name); }
  ConnectionCount& user(const std::string& name) { return find(users_, name); }

 private:
  ConnectionCount& find(std::map<std::string, ConnectionCount>& counts, const std::string& name) {
    const std::lock_guard lock(mutex_);
    return counts.try_emplace(name).first->second;
  }

  std::mutex mutex_;
  std::map<std::string, ConnectionCount> databases_;
  std::map<std::string, ConnectionCount> users_;
};

}  // namespace sluice::pool
