// The socket reactor (net/socket_reactor.h): libuv's work started from a socket callback is served
// in the next turn, not at libuv's next timer; a socket released in a turn stays readable memory
// until the turn is over; the loop runs while a socket is watched and ends when none is.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>

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

}  // namespace
}  // namespace sluice::net
