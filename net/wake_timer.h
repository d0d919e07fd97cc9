// Wakes a SocketReactor's poll for libuv's next timer, so that the poll itself never has a timeout.
// An epoll_wait with a timeout costs the kernel a clock read on every call and a high-resolution
// timer armed and cancelled on every sleep, and the reactor calls it a few times per transaction
// (bench/HISTORY.md, "The poll's timeout, on this host"). A timerfd in the epoll is armed only when libuv's
// next timer changes: a few times a second (the loop monitor's tick, the janitor's), not per turn.
// It is armed at the timer's deadline on CLOCK_MONOTONIC, the clock libuv's loop time is read
// from (to the millisecond), so a turn that arms it late does not make the timer late.
#pragma once

#include <cstdint>

namespace sluice::net {

class WakeTimer {
 public:
  WakeTimer();  // throws std::runtime_error when the kernel gives no timerfd
  ~WakeTimer();
  WakeTimer(const WakeTimer&) = delete;
  WakeTimer& operator=(const WakeTimer&) = delete;

  [[nodiscard]] int fd() const { return fd_; }

  // The poll is to wake at `deadline_ms`, in libuv's loop time. Arms the timerfd unless it is armed
  // for that already. False when the kernel refused: the caller waits with a timeout instead.
  [[nodiscard]] bool wake_at(std::uint64_t deadline_ms);
  // The timerfd was readable: its expiry is read, and the next wake_at arms it again.
  void fired();

 private:
  int fd_;
  std::uint64_t armed_ms_ = 0;  // when it fires, on CLOCK_MONOTONIC; 0 when it is not armed
  std::uint64_t fired_deadline_ms_ = 0;
};

}  // namespace sluice::net
