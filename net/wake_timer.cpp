#include "net/wake_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace sluice::net {

WakeTimer::WakeTimer() : fd_(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error(std::string("timerfd_create: ") + std::strerror(errno));
}

WakeTimer::~WakeTimer() { ::close(fd_); }

bool WakeTimer::wake_at(std::uint64_t deadline_ms) {
  // libuv reads the coarse clock instead where its resolution is 1 ms or finer, and that may still
  // be a millisecond short of a deadline CLOCK_MONOTONIC has reached: a deadline asked for again
  // after it fired is armed a millisecond later, not again and again at once.
  const std::uint64_t at_ms = deadline_ms == fired_deadline_ms_ ? deadline_ms + 1 : deadline_ms;
  if (armed_ms_ == at_ms) return true;
  itimerspec at{};
  at.it_value.tv_sec = static_cast<time_t>(at_ms / 1000);
  at.it_value.tv_nsec = static_cast<long>(at_ms % 1000) * 1'000'000;
  if (timerfd_settime(fd_, TFD_TIMER_ABSTIME, &at, nullptr) != 0) return false;
  armed_ms_ = at_ms;
  return true;
}

void WakeTimer::fired() {
  // Level-triggered in the epoll: read, or it is ready at every poll until it is armed again.
  // Nothing to read (EAGAIN) only if it was armed again since it fired.
  std::uint64_t expirations = 0;
  [[maybe_unused]] const ssize_t bytes = ::read(fd_, &expirations, sizeof expirations);
  fired_deadline_ms_ = armed_ms_;
  armed_ms_ = 0;
}

}  // namespace sluice::net
