#include "net/mailbox.h"

namespace sluice::net {

Mailbox::Mailbox(uv_loop_t* loop) : wakeup_(new uv_async_t{}) {
  uv_async_init(loop, wakeup_, [](uv_async_t* handle) { static_cast<Mailbox*>(handle->data)->deliver(); });
  wakeup_->data = this;
  // An empty mailbox must not keep its loop running.
  uv_unref(reinterpret_cast<uv_handle_t*>(wakeup_));
}

Mailbox::~Mailbox() {
  wakeup_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(wakeup_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_async_t*>(handle); });
}

void Mailbox::post(Call call) {
  {
    const std::lock_guard lock(mutex_);
    queued_.push_back(std::move(call));
  }
  uv_async_send(wakeup_);  // several sends before the loop wakes make one delivery
}

void Mailbox::deliver() {
  std::vector<Call> calls;
  {
    const std::lock_guard lock(mutex_);
    calls.swap(queued_);
  }
  for (auto& call : calls) call();
}

}  // namespace sluice::net
