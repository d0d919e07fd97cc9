// Wakes a SocketReactor's poll for libuv's next timer, so that the poll itself never has a timeout.
// An epoll_wait with a timeout costs the kernel a clock read on every call and a high-resolution
// timer armed and cancelled on every sleep; a `pgbench -C` transaction sleeps about three times,
// and that was about 0.5 µs of its 15 (3 %) here. A timerfd in the epoll instead is armed only
// when libuv's next timer changes: a few times a second (the loop monitor's tick, the janitor's),
// not per turn. It fires as the timeout would have: `wait_ms` after the turn that armed it, which
// is no earlier than the timer is due by libuv's clock (the loop's time truncated to the
// millisecond), as an epoll_wait of `wait_ms` would wake no earlier.
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

  // The poll is to wake by `deadline_ms` (libuv's loop time), `wait_ms` > 0 from now. Arms the
  // timerfd unless it is armed for that deadline already. False when the kernel refused: the
  // caller waits with a timeout instead.
  [[nodiscard]] bool wake_by(std::uint64_t deadline_ms, int wait_ms);
  // The timerfd was readable: its expiry is read, and the next wake_by arms it again.
  void fired();

 private:
  int fd_;
  bool armed_ = false;
  std::uint64_t armed_deadline_ms_ = 0;
};

}  // namespace sluice::net
