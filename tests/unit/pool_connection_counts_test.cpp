// The daemon-wide counts behind max_db_connections and max_user_connections: a limit holds when
// several workers' threads take places at once, each name keeps one count while a pool uses it, and
// the (database, user) pairs that wait stand in line.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pool/connection_counts.h"

namespace sluice::pool {
namespace {

TEST(ConnectionCounts, NoLimitCountsEveryServer) {
  ConnectionCounts counts;
  const auto seats = counts.join("app", "alice");
  ConnectionCount& count = *seats.database.count;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(count.try_take(*seats.database.member, 0));
  EXPECT_EQ(count.servers(), 5);
  EXPECT_EQ(seats.database.member->servers(), 5);
  count.give_back(*seats.database.member);
  EXPECT_EQ(count.servers(), 4);
  EXPECT_EQ(seats.database.member->servers(), 4);
}

TEST(ConnectionCounts, ALimitRefusesThePlaceAboveIt) {
  ConnectionCounts counts;
  const auto alice = counts.join("app", "alice");
  const auto bob = counts.join("app", "bob");
  ConnectionCount& count = *alice.database.count;
  ASSERT_EQ(bob.database.count, &count);  // one count per database, a member per user
  EXPECT_TRUE(count.try_take(*alice.database.member, 2));
  EXPECT_TRUE(count.try_take(*bob.database.member, 2));
  EXPECT_FALSE(count.try_take(*bob.database.member, 2));
  EXPECT_EQ(count.servers(), 2);
  EXPECT_EQ(bob.database.member->servers(), 1);
  count.give_back(*alice.database.member);
  EXPECT_TRUE(count.try_take(*bob.database.member, 2));
  EXPECT_EQ(bob.database.member->servers(), 2);
  // Lowered on reload below what is open: nothing more until enough are given back.
  EXPECT_FALSE(count.try_take(*alice.database.member, 1));
  EXPECT_EQ(count.servers(), 2);
}

// A closed server whose backend PostgreSQL still counts: out of its pair's servers (and so of the
// shares) at once, its place taken until the backend has gone.
TEST(ConnectionCounts, ADepartingBackendKeepsItsPlaceButLeavesTheShares) {
  ConnectionCounts counts;
  const auto alice = counts.join("app", "alice");
  const auto bob = counts.join("app", "bob");
  ConnectionCount& count = *alice.database.count;
  EXPECT_TRUE(count.try_take(*alice.database.member, 2));
  EXPECT_TRUE(count.try_take(*alice.database.member, 2));
  count.depart(*alice.database.member);
  EXPECT_EQ(count.servers(), 1);
  EXPECT_EQ(alice.database.member->servers(), 1);
  EXPECT_FALSE(count.try_take(*bob.database.member, 2));
  count.departed();
  EXPECT_TRUE(count.try_take(*bob.database.member, 2));
  EXPECT_EQ(count.servers(), 2);
  EXPECT_EQ(bob.database.member->servers(), 1);
}

TEST(ConnectionCounts, TheLimitHoldsAcrossThreads) {
  ConnectionCounts counts;
  const auto seats = counts.join("app", "alice");
  ConnectionCount& count = *seats.database.count;
  constexpr int kLimit = 3;
  std::atomic<int> held{0};
  std::atomic<int> most{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!count.try_take(*seats.database.member, kLimit)) continue;
        const int now = held.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        held.fetch_sub(1);
        count.give_back(*seats.database.member);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_LE(most.load(), kLimit);
  EXPECT_EQ(count.servers(), 0);
}

// A database's count and a user's are apart even when the names are the same; both go with the
// pair's last pool, so a stream of distinct users leaves nothing behind.
TEST(ConnectionCounts, EachNameHasOneCountPerKindWhileAPoolUsesIt) {
  ConnectionCounts counts;
  const auto first = counts.join("app", "app");
  EXPECT_NE(first.database.count, first.user.count);
  const auto second = counts.join("app", "app");  // another pool of the pair
  EXPECT_EQ(second.database.member, first.database.member);
  counts.join("other", "app");
  EXPECT_EQ(counts.join("app", "bob").database.count, first.database.count);
  EXPECT_TRUE(counts.has_pool("app", "bob"));
  counts.leave("app", "bob");
  EXPECT_FALSE(counts.has_pool("app", "bob"));
  counts.leave("app", "app");
  EXPECT_TRUE(counts.has_pool("app", "app"));
  counts.leave("app", "app");
  counts.leave("other", "app");
  EXPECT_FALSE(counts.has_pool("app", "app"));
  EXPECT_EQ(counts.size(), 0U);
}

// Pairs, not pools, stand in line: a pair with many waiting pools has one place in it, and each of
// its pools waits in the pair's own line.
TEST(ConnectionCounts, PairsWaitInLineAndTheirPoolsInThePairsLine) {
  ConnectionCounts counts;
  const auto heavy = counts.join("app", "heavy");
  const auto light = counts.join("app", "light");
  ConnectionCount& count = *heavy.database.count;
  ConnectionCount::Member& h = *heavy.database.member;
  ConnectionCount::Member& l = *light.database.member;
  const int a = 0;
  const int b = 0;
  const int c = 0;
  count.start_starving(h, &a);
  count.start_starving(h, &b);
  count.start_starving(l, &c);
  EXPECT_EQ(count.starving_members(), 2);
  EXPECT_EQ(count.waiting_beside(h).other_members, 1);
  EXPECT_EQ(count.waiting_beside(h).member_pools, 2);
  // The fewest servers any other pair in line holds: the rounded-down share's test.
  EXPECT_TRUE(count.try_take(h, 0));
  EXPECT_EQ(count.waiting_beside(h).fewest_other_servers, 0);
  EXPECT_EQ(count.waiting_beside(l).fewest_other_servers, 1);
  count.give_back(h);
  EXPECT_EQ(count.place_in_line(h), 0);
  EXPECT_EQ(count.place_in_line(l), 1);
  EXPECT_EQ(count.place_in_member_line(h, &b), 1);
  EXPECT_EQ(count.place_in_member_line(h, &c), 2);  // not in its line: behind everyone
  // A turn: the pool and its pair to the ends of their lines.
  count.to_end_of_line(h, &a);
  EXPECT_EQ(count.place_in_line(l), 0);
  EXPECT_EQ(count.place_in_line(h), 1);
  EXPECT_EQ(count.place_in_member_line(h, &b), 0);
  // The pair leaves the line with its last waiting pool.
  count.stop_starving(h, &a);
  EXPECT_EQ(count.starving_members(), 2);
  count.stop_starving(h, &b);
  EXPECT_EQ(count.starving_members(), 1);
  EXPECT_EQ(count.place_in_line(h), 1);
  count.stop_starving(l, &c);
  EXPECT_EQ(count.starving_members(), 0);
}

// Another worker's pool starts and stops waiting while this one reads who waits beside its pair:
// the pair is never counted as waiting while missing from the line (that read once divided by zero).
TEST(ConnectionCounts, WhoWaitsIsReadWholeWhileAnotherWorkerChangesIt) {
  ConnectionCounts counts;
  const auto seats = counts.join("app", "heavy");
  ConnectionCount& count = *seats.database.count;
  ConnectionCount::Member& pair = *seats.database.member;
  const int other_worker_pool = 0;
  std::atomic<bool> stop{false};
  std::thread other_worker([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      count.start_starving(pair, &other_worker_pool);
      count.stop_starving(pair, &other_worker_pool);
    }
  });
  int disagreements = 0;
  for (int i = 0; i < 2'000'000 && disagreements == 0; ++i) {
    const ConnectionCount::Waiting waiting = count.waiting_beside(pair);
    if (waiting.other_members != 0 || waiting.member_pools > 1) ++disagreements;
  }
  stop = true;
  other_worker.join();
  EXPECT_EQ(disagreements, 0);
}

}  // namespace
}  // namespace sluice::pool
