#include "net/deferred_deleter.h"

namespace sluice::net {

DeferredDeleter::DeferredDeleter(uv_loop_t* loop) : reactor_(SocketReactor::of(loop)) {
  reactor_.add_hook(this);
}

DeferredDeleter::~DeferredDeleter() {
  reactor_.remove_hook(this);
  pending_.clear();
}

void DeferredDeleter::before_poll() {
  if (pending_.empty()) return;
  // Destructors may defer more objects; those wait for the next turn.
  freeing_.swap(pending_);
  freeing_.clear();
}

}  // namespace sluice::net
