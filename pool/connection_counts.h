// Server connections of one database, or of one user, counted across every pool and every worker:
// max_db_connections and max_user_connections span them all (README "Limits against PgBouncer's
// names"), so each count is one atomic that any worker's pool takes a place from.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace sluice::pool {

class ConnectionCount {
 public:
  // One more server, unless the count is already at `limit` (0 = no limit).
  bool try_take(int limit);
  void give_back() { servers_.fetch_sub(1, std::memory_order_relaxed); }
  // One more whatever the limit: a server that exists already (a live upgrade brought it).
  void take() { servers_.fetch_add(1, std::memory_order_relaxed); }
  [[nodiscard]] int servers() const { return servers_.load(std::memory_order_relaxed); }
  // Pools whose clients wait while this count is at its limit, in line in the order they began to
  // wait: a pool holding more than its share of the limit gives servers back (README "Fairness
  // between users"), an idle pool all of its idle ones. A pool already in line goes to its end.
  void start_starving(const void* pool);
  void stop_starving(const void* pool);
  [[nodiscard]] int starving_pools() const { return starving_pools_.load(std::memory_order_relaxed); }
  // The pool's place in line (0: first), or the line's length when it is not in it.
  [[nodiscard]] int place_in_line(const void* pool) const;

 private:
  std::atomic<int> servers_{0};
  std::atomic<int> starving_pools_{0};  // line_.size(), read without the lock
  mutable std::mutex line_mutex_;       // the line changes only when a pool starts or stops waiting
  std::deque<const void*> line_;
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
