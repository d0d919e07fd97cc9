// LoopMonitor's slow-turn warning says where the turn's time went, from the thread's schedstat:
// a turn that computes shows as run time (or wait for a CPU), one that blocks does not.
#include "daemon/loop_monitor.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <ctime>
#include <functional>

#include "daemon/thread_schedstat.h"
#include "net/socket_reactor.h"

namespace sluice {
namespace {

constexpr std::uint64_t kMs = 1000000;

TEST(ThreadSchedstat, ParsesTheKernelsThreeNumbers) {
  const auto times = daemon::parse_schedstat("4212494 6777071 2\n");
  ASSERT_TRUE(times.has_value());
  EXPECT_EQ(times->ran_ns, 4212494U);
  EXPECT_EQ(times->waited_ns, 6777071U);
  // "0 0 0": scheduler accounting switched off.
  for (const char* bad : {"", "1 2\n", "1 2 3", "1 2 3\nx", "a 2 3\n", "1  2 3\n", "-1 2 3\n", "0 0 0\n"})
    EXPECT_FALSE(daemon::parse_schedstat(bad).has_value()) << '"' << bad << '"';
}

// Runs a loop whose one timer, 400 ms in, holds the loop with `work` (the monitor has read
// schedstat at the end of the first turn, and of its tick's at 250 ms); returns what the monitor
// made of that turn.
std::optional<daemon::SlowTurn> slow_turn_of(std::function<void()> work) {
  uv_loop_t loop;
  EXPECT_EQ(uv_loop_init(&loop), 0);
  std::optional<daemon::SlowTurn> seen;
  {
    net::SocketReactor reactor(&loop);
    daemon::LoopMonitor monitor(&loop, 100);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &work;
    uv_timer_start(
        &timer,
        [](uv_timer_t* t) {
          (*static_cast<std::function<void()>*>(t->data))();
          uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
        },
        400, 0);
    reactor.run();
    seen = monitor.last_slow_turn();
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the monitor's handles close
  EXPECT_EQ(uv_loop_close(&loop), 0);
  return seen;
}

// Computing, the thread is on a CPU or waiting for one: the turn is run time and wait, whatever
// else the machine does. (The busy loop reads a clock that leaves the kernel's run time as it was.)
TEST(LoopMonitorSlowTurn, AComputingTurnIsRunTimeOrWait) {
  if (!daemon::read_thread_schedstat()) GTEST_SKIP() << "this kernel gives no /proc/thread-self/schedstat";
  const auto turn = slow_turn_of([] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
    while (std::chrono::steady_clock::now() < until) {
    }
  });
  ASSERT_TRUE(turn.has_value()) << "150 ms of work is a slow turn at 100 ms";
  ASSERT_TRUE(turn->spent.has_value());
  EXPECT_GE(turn->held_ns, 140 * kMs);
  EXPECT_GE(turn->spent->ran_ns + turn->spent->waited_ns, 140 * kMs)
      << "ran " << turn->spent->ran_ns / kMs << " ms, waited " << turn->spent->waited_ns / kMs << " ms";
  EXPECT_GE(turn->stretch_ns, turn->held_ns);
}

TEST(LoopMonitorSlowTurn, ABlockedTurnIsNotRunTime) {
  if (!daemon::read_thread_schedstat()) GTEST_SKIP() << "this kernel gives no /proc/thread-self/schedstat";
  const auto turn = slow_turn_of([] {
    const timespec pause{.tv_sec = 0, .tv_nsec = 150 * kMs};
    nanosleep(&pause, nullptr);
  });
  ASSERT_TRUE(turn.has_value());
  ASSERT_TRUE(turn->spent.has_value());
  EXPECT_GE(turn->held_ns, 140 * kMs);
  // Not the wait: on a loaded machine (or under a CPU quota) the two wake-ups may wait long.
  EXPECT_LT(turn->spent->ran_ns, 50 * kMs) << "waited " << turn->spent->waited_ns / kMs << " ms";
}

}  // namespace
}  // namespace sluice
