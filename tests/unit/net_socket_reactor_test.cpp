// The socket reactor (net/socket_reactor.h): libuv's work started from a socket callback is served
// in the next turn, not at libuv's next timer; a socket released in a turn stays readable memory
// until the turn is over; the loop runs while a socket is watched and ends when none is; libuv's
// timers wake a poll that has no timeout of its own (net/wake_timer.h).
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "net/socket_reactor.h"

namespace sluice::net {
namespace {

struct SocketPair {
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0); }
  ~SocketPair() {
    close(fds[0]);
    close(fds[1]);
  }
  void make_readable() const { EXPECT_EQ(write(fds[1], "x", 1), 1); }
  int fds[2] = {-1, -1};
};

// Calls `react` on each event; released by the reactor when done, so it lives on the heap.
struct Probe final : SocketReactor::Watcher {
  explicit Probe(std::function<void(Probe&)> on_event) : react(std::move(on_event)) {}
  void on_events(std::uint32_t) override { react(*this); }
  std::function<void(Probe&)> react;
};

class SocketReactorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  uv_loop_t loop_{};
};

// A libuv poll handle started in a socket callback (a server connection's libpq connect does
// this) reaches libuv's epoll at once: libuv hands a changed watcher to its epoll only in its next
// turn, and the reactor gives it that turn (uv_backend_timeout is 0 then) instead of sleeping until
// libuv's next timer.
TEST_F(SocketReactorTest, LibuvWorkStartedInASocketCallbackIsServedAtOnce) {
  SocketPair watched;
  SocketPair polled;
  polled.make_readable();
  uv_poll_t poll{};
  uv_timer_t give_up{};
  bool served = false;
  const auto started = std::chrono::steady_clock::now();
  {
    SocketReactor reactor(&loop_);
    ASSERT_EQ(uv_poll_init(&loop_, &poll, polled.fds[0]), 0);
    poll.data = &served;
    uv_timer_init(&loop_, &give_up);
    uv_timer_start(
        &give_up, [](uv_timer_t* timer) { SocketReactor::of(timer->loop).stop(); }, 5000, 0);
    auto* probe = new Probe([&](Probe& self) {
      uv_poll_start(&poll, UV_READABLE, [](uv_poll_t* handle, int, int) {
        *static_cast<bool*>(handle->data) = true;
        SocketReactor::of(handle->loop).stop();
      });
      SocketReactor::of(&loop_).release(&self, watched.fds[0]);
    });
    ASSERT_TRUE(reactor.add(watched.fds[0], EPOLLIN, probe));
    watched.make_readable();
    reactor.run();
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&give_up), nullptr);
  }
  EXPECT_TRUE(served);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1))
      << "the poll handle waited for the timer";
}

// Released in a turn, a watcher is freed only when the turn is over: an event for it already read
// in the same turn still reaches live memory (ASan would say otherwise).
TEST_F(SocketReactorTest, AWatcherReleasedInATurnLivesUntilTheTurnIsOver) {
  SocketPair first;
  SocketPair second;
  int events_after_release = 0;
  bool released = false;
  {
    SocketReactor reactor(&loop_);
    Probe* other = nullptr;
    auto* one = new Probe([&](Probe& self) {
      if (!released) {
        released = true;
        reactor.release(other, second.fds[0]);
        reactor.release(&self, first.fds[0]);
      }
    });
    other = new Probe([&](Probe&) {
      if (released) ++events_after_release;
      if (!released) {
        released = true;
        reactor.release(one, first.fds[0]);
        reactor.release(other, second.fds[0]);
      }
    });
    ASSERT_TRUE(reactor.add(first.fds[0], EPOLLIN, one));
    ASSERT_TRUE(reactor.add(second.fds[0], EPOLLIN, other));
    first.make_readable();
    second.make_readable();
    reactor.run();  // both are released in the first turn: nothing is watched, the loop ends
  }
  EXPECT_TRUE(released);
  EXPECT_EQ(events_after_release, 0) << "the event the turn had read was handed over";
}

// Stopped from a socket callback (the control socket's shutdown), the reactor leaves no stop
// request in libuv behind it: closing the loop after it (net/loop_close.h) runs libuv until its
// handles are closed, and a pending uv_stop would end that run before any close callback.
TEST_F(SocketReactorTest, StoppedFromASocketCallbackItLeavesLibuvFreeToCloseTheLoop) {
  SocketPair watched;
  uv_timer_t timer{};
  bool timer_closed = false;
  {
    SocketReactor reactor(&loop_);
    uv_timer_init(&loop_, &timer);
    timer.data = &timer_closed;
    uv_timer_start(
        &timer, [](uv_timer_t*) {}, 60000, 0);
    auto* probe = new Probe([&](Probe& self) {
      reactor.stop();
      reactor.release(&self, watched.fds[0]);
    });
    ASSERT_TRUE(reactor.add(watched.fds[0], EPOLLIN, probe));
    watched.make_readable();
    reactor.run();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer),
             [](uv_handle_t* handle) { *static_cast<bool*>(handle->data) = true; });
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_TRUE(timer_closed) << "a stop request left behind ended libuv's run before the close";
  }
}

// A timer that came due while a turn's socket callbacks ran fires right after them, as it would
// under libuv's own loop: the wait for the next poll is reckoned from the time now, not from the
// time the last poll returned.
TEST_F(SocketReactorTest, ATimerDueDuringALongTurnFiresRightAfterIt) {
  SocketPair watched;
  uv_timer_t timer{};
  std::uint64_t callback_done_ns = 0;
  std::uint64_t timer_fired_ns = 0;
  {
    SocketReactor reactor(&loop_);
    uv_timer_init(&loop_, &timer);
    timer.data = &timer_fired_ns;
    uv_timer_start(
        &timer,
        [](uv_timer_t* handle) {
          *static_cast<std::uint64_t*>(handle->data) = uv_hrtime();
          SocketReactor::of(handle->loop).stop();
        },
        100, 0);
    auto* probe = new Probe([&](Probe& self) {
      const std::uint64_t until = uv_hrtime() + 200'000'000;  // the timer comes due meanwhile
      while (uv_hrtime() < until) {
      }
      callback_done_ns = uv_hrtime();
      reactor.release(&self, watched.fds[0]);
    });
    ASSERT_TRUE(reactor.add(watched.fds[0], EPOLLIN, probe));
    watched.make_readable();
    reactor.run();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  }
  ASSERT_NE(timer_fired_ns, 0U);
  EXPECT_LT(timer_fired_ns - callback_done_ns, 50'000'000U)
      << "the timer waited " << (timer_fired_ns - callback_done_ns) / 1'000'000 << " ms after the turn";
}

// Runs `reactor` with one more socket watched, which nothing writes to for `unstick_after`: until
// then only a timer can end the run (the socket's event ends it too, so that a test that fails does
// not hang). Returns how long the run took.
std::chrono::milliseconds run_beside_a_quiet_socket(SocketReactor& reactor,
                                                    std::chrono::milliseconds unstick_after) {
  SocketPair quiet;
  bool released = false;
  auto* probe = new Probe([&](Probe& self) {
    reactor.stop();
    reactor.release(&self, quiet.fds[0]);
    released = true;
  });
  EXPECT_TRUE(reactor.add(quiet.fds[0], EPOLLIN, probe));
  std::mutex mutex;
  std::condition_variable ended;
  bool run_over = false;
  std::thread unstick([&] {
    std::unique_lock lock(mutex);
    if (!ended.wait_for(lock, unstick_after, [&] { return run_over; })) quiet.make_readable();
  });
  const auto started = std::chrono::steady_clock::now();
  reactor.run();
  const auto took = std::chrono::steady_clock::now() - started;
  {
    std::lock_guard lock(mutex);
    run_over = true;
  }
  ended.notify_one();
  unstick.join();
  if (!released) reactor.release(probe, quiet.fds[0]);
  return std::chrono::duration_cast<std::chrono::milliseconds>(took);
}

void stop_reactor(uv_timer_t* timer) { SocketReactor::of(timer->loop).stop(); }

// Counts the reactor's turns (kernel polls).
struct TurnCounter final : SocketReactor::TurnHook {
  void before_poll() override { ++turns; }
  void after_poll() override {}
  int turns = 0;
};

// The poll waits with no timeout: a repeating libuv timer still fires, each time, woken by the wake
// timer, which is armed for each next expiry and wakes the poll only then (a wake timer left ready
// would wake every poll, and the loop would spin between the expiries).
TEST_F(SocketReactorTest, ARepeatingTimerWakesAPollThatNoSocketWakes) {
  uv_timer_t timer{};
  int fired = 0;
  TurnCounter counter;
  std::chrono::milliseconds took{};
  {
    SocketReactor reactor(&loop_);
    reactor.add_hook(&counter);
    uv_timer_init(&loop_, &timer);
    timer.data = &fired;
    uv_timer_start(
        &timer,
        [](uv_timer_t* handle) {
          if (++*static_cast<int*>(handle->data) == 3) stop_reactor(handle);
        },
        50, 50);
    took = run_beside_a_quiet_socket(reactor, std::chrono::seconds(5));
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    reactor.remove_hook(&counter);
  }
  EXPECT_EQ(fired, 3);
  EXPECT_LT(took, std::chrono::seconds(2)) << "the timer did not wake the poll";
  EXPECT_LE(counter.turns, 12) << "the loop turned between the expiries";
}

// Once the last timer has fired the poll sleeps until a socket wakes it: the wake timer's expiry
// was read, and it does not wake every poll from then on.
TEST_F(SocketReactorTest, AfterTheLastTimerFiresThePollSleeps) {
  uv_timer_t timer{};
  bool fired = false;
  TurnCounter counter;
  {
    SocketReactor reactor(&loop_);
    reactor.add_hook(&counter);
    uv_timer_init(&loop_, &timer);
    timer.data = &fired;
    uv_timer_start(
        &timer, [](uv_timer_t* handle) { *static_cast<bool*>(handle->data) = true; }, 20, 0);
    run_beside_a_quiet_socket(reactor, std::chrono::milliseconds(200));  // the socket ends the run
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    reactor.remove_hook(&counter);
  }
  EXPECT_TRUE(fired);
  EXPECT_LE(counter.turns, 8) << "the loop turned while nothing was due";
}

// A timer started from a socket callback, due before the one the wake timer is armed for, moves
// the wake-up forward.
TEST_F(SocketReactorTest, AnEarlierTimerStartedInACallbackMovesTheWakeUpForward) {
  SocketPair trigger;
  uv_timer_t late{};
  uv_timer_t early{};
  std::chrono::milliseconds took{};
  {
    SocketReactor reactor(&loop_);
    uv_timer_init(&loop_, &late);
    uv_timer_init(&loop_, &early);
    uv_timer_start(&late, stop_reactor, 10000, 0);
    auto* starter = new Probe([&](Probe& self) {
      uv_timer_start(&early, stop_reactor, 100, 0);
      reactor.release(&self, trigger.fds[0]);
    });
    ASSERT_TRUE(reactor.add(trigger.fds[0], EPOLLIN, starter));
    trigger.make_readable();  // in the first poll, which the late timer's wake-up was armed for
    took = run_beside_a_quiet_socket(reactor, std::chrono::seconds(5));
    uv_close(reinterpret_cast<uv_handle_t*>(&late), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&early), nullptr);
  }
  EXPECT_LT(took, std::chrono::seconds(2)) << "the wake-up stayed at the late timer's";
}

}  // namespace
}  // namespace sluice::net
