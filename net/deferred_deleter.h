// Frees objects on the next loop turn, never inside a callback that may still
// be running on them (Envoy's DeferredDeletable, in a few lines).
#pragma once

#include <uv.h>

#include <memory>
#include <vector>

#include "net/socket_reactor.h"

namespace sluice::net {

class DeferredDeleter final : SocketReactor::TurnHook {
 public:
  // On a loop with a SocketReactor.
  explicit DeferredDeleter(uv_loop_t* loop);
  ~DeferredDeleter();
  DeferredDeleter(const DeferredDeleter&) = delete;
  DeferredDeleter& operator=(const DeferredDeleter&) = delete;

  template <class T>
  void defer(std::unique_ptr<T> object) {
    // Released only once the entry holds it: if the append throws, `object` still frees it.
    pending_.emplace_back(object.get(), [](void* owned) { delete static_cast<T*>(owned); });
    static_cast<void>(object.release());
  }
  // Frees everything now (shutdown, after the loop has stopped).
  void flush() { pending_.clear(); }

 private:
  // The turn's callbacks are done, the poll is next: what they handed over goes now.
  void before_poll() override;
  void after_poll() override {}

  // An object and how to free it, without the heap block a shared_ptr<void> would take.
  using Owned = std::unique_ptr<void, void (*)(void*)>;

  SocketReactor& reactor_;
  std::vector<Owned> pending_;
  std::vector<Owned> freeing_;  // the turn's batch; both keep their capacity from turn to turn
};

}  // namespace sluice::net
