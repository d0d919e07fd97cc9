// A server's last moments before the daemon exits: it has stopped accepting and lets the
// connections it accepted finish (a request accepted just before a stop or a live upgrade still
// gets its answer), for at most a grace period; then `done`, once.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>

#include "net/loop_timer.h"

namespace sluice::net {

class WindDown {
 public:
  WindDown() = default;
  WindDown(const WindDown&) = delete;
  WindDown& operator=(const WindDown&) = delete;

  // Calls `done` from finish(), or from a timer after `grace`, whichever comes first.
  void start(uv_loop_t* loop, std::chrono::milliseconds grace, std::function<void()> done);
  [[nodiscard]] bool started() const { return timer_ != nullptr; }
  // Started, and `done` not called yet.
  [[nodiscard]] bool pending() const { return static_cast<bool>(done_); }
  // The last connection is gone: `done` now (if it is still pending).
  void finish();

 private:
  std::unique_ptr<LoopTimer> timer_;
  std::function<void()> done_;
};

}  // namespace sluice::net
