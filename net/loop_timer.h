// A libuv timer that belongs to one object. libuv frees a handle only after its close callback, so
// the handle lives on the heap and outlives its owner until then: the owner may go at any time,
// even from inside the callback, and the callback is never called after.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>

namespace sluice::net {

class LoopTimer {
 public:
  // `fire` is the callback for the timer's whole life (it may destroy this).
  LoopTimer(uv_loop_t* loop, std::function<void()> fire);
  ~LoopTimer();
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  // Fires after `timeout`, then every `repeat` unless it is zero; a restart replaces both.
  void start(std::chrono::milliseconds timeout, std::chrono::milliseconds repeat = {});
  void stop();
  // The loop may end while this timer is running (housekeeping that must not keep a loop alive).
  void unref();
  // The loop's time of this turn, in milliseconds (uv_now).
  [[nodiscard]] std::uint64_t now() const;

 private:
  struct Handle {
    uv_timer_t timer{};  // first: the close callback gets it and frees the whole Handle
    std::function<void()> fire;
  };
  Handle* handle_;
};

}  // namespace sluice::net
