// The turn clock: the socket callbacks of one loop turn share one clock read; outside them (timers,
// after the loop) every call reads the clock, so nothing sees a stale time.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <array>
#include <vector>

#include "net/socket_reactor.h"
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

// A socket pair watched for reading; each time it is readable the callback notes the turn clock.
struct Watched final : SocketReactor::Watcher {
  int fds[2] = {-1, -1};
  SocketReactor* reactor = nullptr;
  std::vector<std::array<Clock::time_point, 2>> seen;
  int times = 0;  // how often to answer a readable socket before the watch stops

  void make_readable() const { ASSERT_EQ(write(fds[1], "x", 1), 1); }

  void on_events(std::uint32_t) override {
    char byte = 0;
    while (read(fds[0], &byte, 1) == 1) {
    }
    seen.push_back(two_reads_apart());
    if (static_cast<int>(seen.size()) == times) return reactor->change(fds[0], EPOLLIN, 0, this);
    make_readable();  // the next turn's I/O
  }
};

TEST(TurnClock, OneTurnsCallbacksShareAReadAndOthersReadTheClock) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  std::array<Watched, 2> watched;
  watched[0].times = 2;  // the first turn, then one more
  watched[1].times = 1;  // the first turn only
  uv_timer_t timer;
  std::array<Clock::time_point, 2> timer_reads{};
  {
    SocketReactor reactor(&loop);
    for (Watched& w : watched) {
      ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, w.fds), 0);
      w.reactor = &reactor;
      ASSERT_TRUE(reactor.add(w.fds[0], EPOLLIN, &w));
      w.make_readable();  // both are readable at the first poll: one turn serves both
    }
    uv_timer_init(&loop, &timer);
    timer.data = &timer_reads;
    uv_timer_start(
        &timer,
        [](uv_timer_t* t) {
          *static_cast<std::array<Clock::time_point, 2>*>(t->data) = two_reads_apart();
          SocketReactor::of(t->loop).stop();  // its sockets keep it turning
        },
        20, 0);
    reactor.run();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the timer closes
  EXPECT_EQ(uv_loop_close(&loop), 0);
  for (Watched& w : watched) {
    close(w.fds[0]);
    close(w.fds[1]);
  }

  ASSERT_EQ(watched[0].seen.size(), 2U);
  ASSERT_EQ(watched[1].seen.size(), 1U);
  const auto first_turn = watched[0].seen[0][0];
  EXPECT_EQ(watched[0].seen[0][1], first_turn);  // one read within a callback
  EXPECT_EQ(watched[1].seen[0][0], first_turn);  // and across the turn's callbacks
  EXPECT_EQ(watched[1].seen[0][1], first_turn);
  EXPECT_EQ(watched[0].seen[1][0], watched[0].seen[1][1]);
  EXPECT_LT(first_turn, watched[0].seen[1][0]);  // a new read each turn
  EXPECT_LT(timer_reads[0], timer_reads[1]);     // timers read the clock
  const auto after = two_reads_apart();          // so does code after the loop
  EXPECT_LT(after[0], after[1]);
}

}  // namespace
}  // namespace sluice::net
