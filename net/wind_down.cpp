#include "net/wind_down.h"

#include <utility>

namespace sluice::net {

WindDown::~WindDown() {
  if (timer_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
}

void WindDown::start(uv_loop_t* loop, std::chrono::milliseconds grace, std::function<void()> done) {
  if (started()) return;
  done_ = std::move(done);
  timer_ = new uv_timer_t{};
  uv_timer_init(loop, timer_);
  timer_->data = this;
  uv_timer_start(
      timer_, [](uv_timer_t* timer) { static_cast<WindDown*>(timer->data)->finish(); },
      static_cast<std::uint64_t>(grace.count()), 0);
}

void WindDown::finish() {
  if (!pending()) return;
  uv_timer_stop(timer_);
  std::exchange(done_, nullptr)();
}

}  // namespace sluice::net
