// The daemon-wide counts behind max_db_connections and max_user_connections: a limit holds when
// several workers' threads take places at once, and each name keeps one count.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pool/connection_counts.h"

namespace sluice::pool {
namespace {

TEST(ConnectionCounts, NoLimitCountsEveryServer) {
  ConnectionCount count;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(count.try_take(0));
  EXPECT_EQ(count.servers(), 5);
  count.give_back();
  EXPECT_EQ(count.servers(), 4);
}

TEST(ConnectionCounts, ALimitRefusesThePlaceAboveIt) {
  ConnectionCount count;
  EXPECT_TRUE(count.try_take(2));
  EXPECT_TRUE(count.try_take(2));
  EXPECT_FALSE(count.try_take(2));
  EXPECT_EQ(count.servers(), 2);
  count.give_back();
  EXPECT_TRUE(count.try_take(2));
  // Lowered on reload below what is open: nothing more until enough are given back.
  EXPECT_FALSE(count.try_take(1));
  EXPECT_EQ(count.servers(), 2);
}

TEST(ConnectionCounts, TheLimitHoldsAcrossThreads) {
  ConnectionCount count;
  constexpr int kLimit = 3;
  std::atomic<int> held{0};
  std::atomic<int> most{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!count.try_take(kLimit)) continue;
        const int now = held.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        held.fetch_sub(1);
        count.give_back();
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_LE(most.load(), kLimit);
  EXPECT_EQ(count.servers(), 0);
}

TEST(ConnectionCounts, EachNameHasOneCountPerKind) {
  ConnectionCounts counts;
  ConnectionCount& app = counts.database("app");
  EXPECT_EQ(&counts.database("app"), &app);
  EXPECT_NE(&counts.user("app"), &app);  // a user may share a database's name
  counts.database("other");              // a new name does not move the first one
  EXPECT_EQ(&counts.database("app"), &app);
  const int first = 1;
  app.start_starving(&first);
  EXPECT_EQ(counts.database("app").starving_pools(), 1);
  app.stop_starving(&first);
  EXPECT_EQ(app.starving_pools(), 0);
}

TEST(ConnectionCounts, PoolsWaitInLineAndOneThatStartsAgainGoesToTheEnd) {
  ConnectionCount count;
  const int a = 0;
  const int b = 0;
  const int c = 0;
  count.start_starving(&a);
  count.start_starving(&b);
  EXPECT_EQ(count.place_in_line(&a), 0);
  EXPECT_EQ(count.place_in_line(&b), 1);
  EXPECT_EQ(count.place_in_line(&c), 2);  // not in line: behind everyone
  count.start_starving(&a);               // a turn given back
  EXPECT_EQ(count.place_in_line(&b), 0);
  EXPECT_EQ(count.place_in_line(&a), 1);
  EXPECT_EQ(count.starving_pools(), 2);
  count.stop_starving(&b);
  EXPECT_EQ(count.place_in_line(&a), 0);
  EXPECT_EQ(count.starving_pools(), 1);
}

}  // namespace
}  // namespace sluice::pool
