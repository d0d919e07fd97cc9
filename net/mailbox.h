// Calls posted from any thread, run on one loop's thread: how the main loop and
// the worker loops talk (a mutex-guarded queue and a uv_async_t to wake the loop).
#pragma once

#include <uv.h>

#include <functional>
#include <mutex>
#include <vector>

namespace sluice::net {

class Mailbox {
 public:
  using Call = std::function<void()>;

  // On `loop`'s thread, before any other thread may post.
  explicit Mailbox(uv_loop_t* loop);
  // On the loop's thread; calls still queued are dropped.
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Any thread. Calls run in the order posted, on a later turn of the loop.
  void post(Call call);

 private:
  void deliver();

  uv_async_t* wakeup_;  // heap: freed in its close callback, which may outlive us
  std::mutex mutex_;
  std::vector<Call> queued_;
};

}  // namespace sluice::net
