#include "net/loop_timer.h"

#include <cstdint>
#include <utility>

namespace sluice::net {

LoopTimer::LoopTimer(uv_loop_t* loop, std::function<void()> fire) : handle_(new Handle{{}, std::move(fire)}) {
  uv_timer_init(loop, &handle_->timer);
  handle_->timer.data = handle_;
}

// `fire` may be running (and destroying this): the close callback frees it with the handle.
LoopTimer::~LoopTimer() {
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->timer),
           [](uv_handle_t* closed) { delete static_cast<Handle*>(closed->data); });
}

void LoopTimer::start(std::chrono::milliseconds timeout, std::chrono::milliseconds repeat) {
  uv_timer_start(
      &handle_->timer, [](uv_timer_t* timer) { static_cast<Handle*>(timer->data)->fire(); },
      static_cast<std::uint64_t>(timeout.count()), static_cast<std::uint64_t>(repeat.count()));
}

void LoopTimer::stop() { uv_timer_stop(&handle_->timer); }

void LoopTimer::unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->timer)); }

std::uint64_t LoopTimer::now() const { return uv_now(handle_->timer.loop); }

}  // namespace sluice::net
