#include "net/read_by_peer.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <utility>

namespace sluice::net {

std::unique_ptr<ReadByPeer> ReadByPeer::watch(uv_loop_t* loop, int fd, std::function<bool()> pending_output,
                                              std::chrono::milliseconds limit, std::function<void()> done) {
  std::unique_ptr<ReadByPeer> watch(new ReadByPeer(loop));
  watch->fd_ = fd;
  watch->pending_output_ = std::move(pending_output);
  watch->done_ = std::move(done);
  watch->deadline_ms_ = uv_now(loop) + static_cast<std::uint64_t>(limit.count());
  watch->timer_.start(std::chrono::milliseconds(1), std::chrono::milliseconds(1));
  return watch;
}

bool ReadByPeer::all_read(int fd) {
  int unread = 0;
  return ::ioctl(fd, SIOCOUTQ, &unread) != 0 || unread == 0;
}

void ReadByPeer::poll() {
  const bool read = !pending_output_() && all_read(fd_);
  if (!read && timer_.now() < deadline_ms_) return;
  timer_.stop();
  if (auto done = std::exchange(done_, nullptr)) done();  // may destroy this
}

}  // namespace sluice::net
