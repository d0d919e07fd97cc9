// Server connections of one database, or of one user, counted across every pool and every worker:
// max_db_connections and max_user_connections span them all (README "Limits against PgBouncer's
// names"), so each count is one atomic that any worker's pool takes a place from. Places are shared
// fairly between (database, user) pairs, not pools (README "Fairness between users"): a count keeps
// each pair's own count, and the pairs whose clients wait stand in line.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <string>

namespace sluice::pool {

class ConnectionCount {
 public:
  // One (database, user) pair's part of the count: the servers its pools hold on every worker (every
  // startup setting), and its pools that wait for a place, in the order they began to wait.
  class Member {
   public:
    [[nodiscard]] int servers() const { return servers_.load(std::memory_order_relaxed); }

   private:
    friend class ConnectionCount;
    friend class ConnectionCounts;
    std::atomic<int> servers_{0};
    std::deque<const void*> line_;  // under the count's line lock
    int pools_ = 0;                 // pools that use it, under ConnectionCounts' lock
  };

  // One more server for `member`, unless its servers and departing backends already make `limit`
  // (0 = no limit).
  bool try_take(Member& member, int limit);
  void give_back(Member& member) {
    places_.fetch_sub(kServer, std::memory_order_relaxed);
    member.servers_.fetch_sub(1, std::memory_order_relaxed);
  }
  // One more whatever the limit: a server that exists already (a live upgrade brought it).
  void take(Member& member) {
    places_.fetch_add(kServer, std::memory_order_relaxed);
    member.servers_.fetch_add(1, std::memory_order_relaxed);
  }
  // A closed server whose backend PostgreSQL still counts (pool/departing_backend.h): no longer its
  // pair's server, so not in any share, but its place stays taken until departed().
  void depart(Member& member) {
    places_.fetch_add(kDeparting - kServer, std::memory_order_relaxed);
    member.servers_.fetch_sub(1, std::memory_order_relaxed);
  }
  void departed() { places_.fetch_sub(kDeparting, std::memory_order_relaxed); }
  // The servers the pools hold, departing backends not included: what the shares are made of.
  [[nodiscard]] int servers() const { return servers_in(places_.load(std::memory_order_relaxed)); }

  // A pool whose clients wait while this count is at its limit. Its pair stands in line (the
  // order pairs began to wait), the pool in its pair's own line. A pair holding more than its share
  // of the limit gives servers back; an idle pool all of its idle ones.
  void start_starving(Member& member, const void* pool);
  void stop_starving(Member& member, const void* pool);
  // A turn taken or given back: the pool, and its pair, go to the end of their lines (if in them).
  void to_end_of_line(Member& member, const void* pool);
  [[nodiscard]] int starving_members() const { return starving_members_.load(std::memory_order_relaxed); }
  // Who waits beside a pair: the other pairs in line and the pair's own waiting pools. Read together
  // under the lock, so that they agree — another worker's pool may start or stop waiting between
  // two separate reads.
  struct Waiting {
    int other_members = 0;
    int member_pools = 0;
    int fewest_other_servers = std::numeric_limits<int>::max();  // of the other pairs in line
  };
  [[nodiscard]] Waiting waiting_beside(const Member& member) const;
  // The pair's place in line (0: first), or the line's length when it is not in it.
  [[nodiscard]] int place_in_line(const Member& member) const;
  // The pool's place in its pair's line, or that line's length when it is not in it.
  [[nodiscard]] int place_in_member_line(const Member& member, const void* pool) const;

 private:
  friend class ConnectionCounts;
  // Servers in the low half, departing backends in the high half: try_take weighs both in one
  // compare-and-swap, and depart() moves one from the first to the second at once.
  static constexpr std::uint64_t kServer = 1;
  static constexpr std::uint64_t kDeparting = std::uint64_t{1} << 32;
  static int servers_in(std::uint64_t places) { return static_cast<int>(places & (kDeparting - 1)); }
  static int taken_in(std::uint64_t places) { return servers_in(places) + static_cast<int>(places >> 32); }

  std::atomic<std::uint64_t> places_{0};
  std::atomic<int> starving_members_{0};  // line_.size(), read without the lock
  mutable std::mutex line_mutex_;         // the lines change only when a pool starts or stops waiting
  std::deque<const Member*> line_;
  std::map<std::string, Member> members_;  // by the pair's other name; under ConnectionCounts' lock
};

// Where a pool takes its places from: a count and its pair's member of it.
struct CountSeat {
  ConnectionCount* count = nullptr;
  ConnectionCount::Member* member = nullptr;
};

// Daemon-wide, shared by the workers: one count per database and per user, each with a member per
// (database, user). Made when a pool of the pair is made and dropped with the pair's last pool (not
// the hot path), so a stream of distinct users leaves nothing behind. std::map nodes never move: a
// pool keeps its pointers.
class ConnectionCounts {
 public:
  struct Seats {
    CountSeat database;  // the database's count; the member is the pair's
    CountSeat user;      // the user's count; the member is the pair's too
  };
  Seats join(const std::string& database, const std::string& user);
  // After the pool gave back its places and left every line.
  void leave(const std::string& database, const std::string& user);
  // True while a pool of (database, user) lives on any worker.
  [[nodiscard]] bool has_pool(const std::string& database, const std::string& user) const;
  // Counts and members held, for tests: each lives while a pool uses it.
  [[nodiscard]] std::size_t size() const;

 private:
  using Counts = std::map<std::string, ConnectionCount>;
  static CountSeat join(Counts& counts, const std::string& name, const std::string& member);
  static void leave(Counts& counts, const std::string& name, const std::string& member);

  mutable std::mutex mutex_;
  Counts databases_;
  Counts users_;
};

}  // namespace sluice::pool
