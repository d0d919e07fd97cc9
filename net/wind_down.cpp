#include "net/wind_down.h"

#include <utility>

namespace sluice::net {

void WindDown::start(uv_loop_t* loop, std::chrono::milliseconds grace, std::function<void()> done) {
  if (started()) return;
  done_ = std::move(done);
  timer_ = std::make_unique<LoopTimer>(loop, [this] { finish(); });
  timer_->start(grace);
}

void WindDown::finish() {
  if (!pending()) return;
  timer_->stop();
  std::exchange(done_, nullptr)();
}

}  // namespace sluice::net
