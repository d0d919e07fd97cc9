// The mailbox between loops: calls posted from other threads run on the loop's thread, each
// poster's in the order posted, none lost.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "net/mailbox.h"

namespace sluice::net {
namespace {

TEST(Mailbox, CallsFromOtherThreadsRunOnTheLoopInOrder) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  constexpr int kPosters = 4;
  constexpr int kCalls = 2000;
  std::vector<std::vector<int>> seen(kPosters);  // touched only on the loop thread
  std::atomic<int> wrong_thread{0};
  int remaining = kPosters * kCalls;
  uv_timer_t keep_alive;  // the mailbox does not hold the loop open by itself
  uv_timer_init(&loop, &keep_alive);
  uv_timer_start(
      &keep_alive, [](uv_timer_t*) {}, 60000, 0);
  auto mailbox = std::make_unique<Mailbox>(&loop);
  const auto loop_thread_id = std::this_thread::get_id();

  std::vector<std::thread> posters;
  for (int poster = 0; poster < kPosters; ++poster) {
    posters.emplace_back([&, poster] {
      for (int call = 0; call < kCalls; ++call) {
        mailbox->post([&, poster, call] {
          if (std::this_thread::get_id() != loop_thread_id) ++wrong_thread;
          seen[static_cast<std::size_t>(poster)].push_back(call);
          if (--remaining == 0) uv_stop(&loop);
        });
      }
    });
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (auto& poster : posters) poster.join();

  EXPECT_EQ(remaining, 0);
  EXPECT_EQ(wrong_thread, 0);
  for (const auto& calls : seen) {
    ASSERT_EQ(calls.size(), static_cast<std::size_t>(kCalls));
    for (int call = 0; call < kCalls; ++call) EXPECT_EQ(calls[static_cast<std::size_t>(call)], call);
  }
  mailbox.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&keep_alive), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace sluice::net
