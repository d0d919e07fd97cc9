// The turn clock: the I/O callbacks of one loop turn share one clock read; outside them (timers,
// after the loop) every call reads the clock, so nothing sees a stale time.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <array>
#include <vector>

#include "daemon/loop_monitor.h"
#include "net/turn_clock.h"

namespace sluice::net {
namespace {

using Clock = turn_clock::Clock;

// Two reads of the turn clock with the real clock moved on between them.
std::array<Clock::time_point, 2> two_reads_apart() {
  const auto first = turn_clock::now();
  const auto real = Clock::now();
  while (Clock::now() == real) {
  }
  return {first, turn_clock::now()};
}

struct Seen {
  std::vector<std::array<Clock::time_point, 2>> io_turns;
  std::array<Clock::time_point, 2> timer{};
  int fds[2] = {-1, -1};
  uv_poll_t poll{};
};

TEST(TurnClock, OneTurnsCallbacksShareAReadAndOthersReadTheClock) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  Seen seen;
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, seen.fds), 0);
  {
    daemon::LoopMonitor monitor(&loop, 1000);
    uv_poll_init(&loop, &seen.poll, seen.fds[0]);
    seen.poll.data = &seen;
    uv_poll_start(&seen.poll, UV_READABLE, [](uv_poll_t* handle, int, int) {
      auto& s = *static_cast<Seen*>(handle->data);
      char byte = 0;
      while (read(s.fds[0], &byte, 1) == 1) {
      }
      s.io_turns.push_back(two_reads_apart());
      if (s.io_turns.size() == 2) {
        uv_poll_stop(handle);
        return;
      }
      ASSERT_EQ(write(s.fds[1], "x", 1), 1);  // the next turn's I/O
    });
    ASSERT_EQ(write(seen.fds[1], "x", 1), 1);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &seen;
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<Seen*>(t->data)->timer = two_reads_apart(); }, 20, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&seen.poll), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the monitor's handles close
  EXPECT_EQ(uv_loop_close(&loop), 0);
  close(seen.fds[0]);
  close(seen.fds[1]);

  ASSERT_EQ(seen.io_turns.size(), 2U);
  EXPECT_EQ(seen.io_turns[0][0], seen.io_turns[0][1]);  // one read within a turn's I/O
  EXPECT_EQ(seen.io_turns[1][0], seen.io_turns[1][1]);
  EXPECT_LT(seen.io_turns[0][1], seen.io_turns[1][0]);  // a new read each turn
  EXPECT_LT(seen.timer[0], seen.timer[1]);              // timers read the clock
  const auto after = two_reads_apart();                 // so does code after the loop
  EXPECT_LT(after[0], after[1]);
}

}  // namespace
}  // namespace sluice::net
