#include "net/deferred_deleter.h"

namespace sluice::net {

DeferredDeleter::DeferredDeleter(uv_loop_t* loop) : check_(new uv_check_t{}) {
  uv_check_init(loop, check_);
  check_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(check_));
}

DeferredDeleter::~DeferredDeleter() {
  pending_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(check_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_check_t*>(handle); });
}

void DeferredDeleter::arm() {
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(check_)) != 0) return;
  uv_check_start(check_, [](uv_check_t* handle) {
    auto* self = static_cast<DeferredDeleter*>(handle->data);
    // Destructors may defer more objects; those wait for the next turn.
    self->freeing_.swap(self->pending_);
    self->freeing_.clear();
    if (self->pending_.empty()) uv_check_stop(handle);
  });
}

}  // namespace sluice::net
