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

bool WakeTimer::wake_by(std::uint64_t deadline_ms, int wait_ms) {
  if (armed_ && armed_deadline_ms_ == deadline_ms) return true;
  itimerspec in{};
  in.it_value.tv_sec = wait_ms / 1000;
  in.it_value.tv_nsec = static_cast<long>(wait_ms % 1000) * 1'000'000;
  if (timerfd_settime(fd_, 0, &in, nullptr) != 0) return false;
  armed_ = true;
  armed_deadline_ms_ = deadline_ms;
  return true;
}

void WakeTimer::fired() {
  // Level-triggered in the epoll: read, or it is ready at every poll until it is armed again.
  std::uint64_t expirations = 0;
  [[maybe_unused]] const ssize_t read = ::read(fd_, &expirations, sizeof expirations);
  armed_ = false;
}

}  // namespace sluice::net
