// LoopMonitor's slow-turn warning says where the turn's time went, from the thread's schedstat:
// a turn that computes shows as run time, one that blocks does not.
#include "daemon/loop_monitor.h"

#include <gtest/gtest.h>
#include <time.h>
#include <uv.h>

#include <functional>

#include "daemon/thread_schedstat.h"

namespace sluice {
namespace {

constexpr std::uint64_t kMs = 1000000;

TEST(ThreadSchedstat, ParsesTheKernelsThreeNumbers) {
  const auto times = daemon::parse_schedstat("4212494 6777071 2\n");
  ASSERT_TRUE(times.has_value());
  EXPECT_EQ(times->ran_ns, 4212494U);
  EXPECT_EQ(times->waited_ns, 6777071U);
  for (const char* bad : {"", "1 2\n", "1 2 3", "1 2 3\nx", "a 2 3\n", "1  2 3\n", "-1 2 3\n"})
    EXPECT_FALSE(daemon::parse_schedstat(bad).has_value()) << '"' << bad << '"';
}

std::uint64_t thread_cpu_ns() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000000U + static_cast<std::uint64_t>(now.tv_nsec);
}

// Runs a loop whose one timer, 400 ms in (after the monitor's first tick at 250 and the reading
// at that turn's end), holds the loop with `work`; returns what the monitor made of the turn.
std::optional<daemon::SlowTurn> slow_turn_of(std::function<void()> work) {
  uv_loop_t loop;
  EXPECT_EQ(uv_loop_init(&loop), 0);
  std::optional<daemon::SlowTurn> seen;
  {
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
    uv_run(&loop, UV_RUN_DEFAULT);
    seen = monitor.last_slow_turn();
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the monitor's handles close
  EXPECT_EQ(uv_loop_close(&loop), 0);
  return seen;
}

TEST(LoopMonitorSlowTurn, WorkOnTheCpuCountsAsRunTime) {
  if (!daemon::read_thread_schedstat()) GTEST_SKIP() << "this kernel gives no /proc/thread-self/schedstat";
  const auto turn = slow_turn_of([] {
    const std::uint64_t until = thread_cpu_ns() + 150 * kMs;
    while (thread_cpu_ns() < until) {
    }
  });
  ASSERT_TRUE(turn.has_value()) << "150 ms of CPU is a slow turn at 100 ms";
  ASSERT_TRUE(turn->spent.has_value());
  EXPECT_GE(turn->held_ns, 140 * kMs);
  EXPECT_GE(turn->spent->ran_ns, 145 * kMs) << "the thread computed for 150 ms of its own CPU time";
  EXPECT_GE(turn->stretch_ns, turn->held_ns);
}

TEST(LoopMonitorSlowTurn, ABlockedTurnIsNeitherRunNorWait) {
  if (!daemon::read_thread_schedstat()) GTEST_SKIP() << "this kernel gives no /proc/thread-self/schedstat";
  const auto turn = slow_turn_of([] {
    const timespec pause{.tv_sec = 0, .tv_nsec = 150 * kMs};
    nanosleep(&pause, nullptr);
  });
  ASSERT_TRUE(turn.has_value());
  ASSERT_TRUE(turn->spent.has_value());
  EXPECT_GE(turn->held_ns, 140 * kMs);
  EXPECT_LT(turn->spent->ran_ns + turn->spent->waited_ns, turn->held_ns / 2)
      << "ran " << turn->spent->ran_ns / kMs << " ms, waited " << turn->spent->waited_ns / kMs << " ms";
}

}  // namespace
}  // namespace sluice
