#include "net/read_by_peer.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <utility>

namespace sluice::net {

std::unique_ptr<ReadByPeer> ReadByPeer::watch(uv_loop_t* loop, int fd, std::function<bool()> pending_output,
                                              std::chrono::milliseconds limit, std::function<void()> done) {
  std::unique_ptr<ReadByPeer> watch(new ReadByPeer);
  watch->fd_ = fd;
  watch->pending_output_ = std::move(pending_output);
  watch->done_ = std::move(done);
  watch->deadline_ms_ = uv_now(loop) + static_cast<std::uint64_t>(limit.count());
  watch->timer_ = new uv_timer_t{};
  uv_timer_init(loop, watch->timer_);
  watch->timer_->data = watch.get();
  uv_timer_start(
      watch->timer_, [](uv_timer_t* timer) { static_cast<ReadByPeer*>(timer->data)->poll(); }, 1, 1);
  return watch;
}

ReadByPeer::~ReadByPeer() {
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
}

bool ReadByPeer::all_read(int fd) {
  int unread = 0;
  return ::ioctl(fd, SIOCOUTQ, &unread) != 0 || unread == 0;
}

void ReadByPeer::poll() {
  const bool read = !pending_output_() && all_read(fd_);
  if (!read && uv_now(timer_->loop) < deadline_ms_) return;
  uv_timer_stop(timer_);
  if (auto done = std::exchange(done_, nullptr)) done();  // may destroy this
}

}  // namespace sluice::net
