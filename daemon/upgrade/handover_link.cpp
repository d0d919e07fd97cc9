#include "daemon/upgrade/handover_link.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace sluice::daemon::upgrade {

HandoverLink::HandoverLink(uv_loop_t* loop, int fd, OnMessage on_message, OnClosed on_closed)
    : on_message_(std::move(on_message)), on_closed_(std::move(on_closed)) {
  socket_ = net::PollSocket::open(loop, fd, /*owns_fd=*/true, this);
  if (!socket_) ::close(fd);
}

bool HandoverLink::send(const nlohmann::json& message) {
  if (!socket_) return false;
  if (socket_->write(encode_message(message))) return true;
  close("write failed: the other process is gone");
  return false;
}

void HandoverLink::on_readable() {
  std::array<char, 4096> buffer;
  const ssize_t n = socket_->read(buffer.data(), buffer.size());
  if (n == -EAGAIN) return;
  if (n < 0) return close(std::string("read error: ") + std::strerror(static_cast<int>(-n)));
  if (n == 0) return close("the other process closed the channel");
  reader_.append({buffer.data(), static_cast<std::size_t>(n)});
  for (;;) {
    auto message = reader_.next();
    if (!message) return close(message.error(), /*broken=*/true);
    if (!*message) return;
    on_message_(**message);
    if (!socket_) return;  // the handler closed us
  }
}

void HandoverLink::on_socket_error(int uv_status) { close(net::PollSocket::describe_error(uv_status)); }

void HandoverLink::close(const std::string& reason, bool broken) {
  if (!socket_) return;
  socket_.reset();
  if (on_closed_) on_closed_(reason, broken);
}

}  // namespace sluice::daemon::upgrade
