#include "net/peer_connection.h"

#include "common/log.h"

namespace sluice::net {

bool PeerConnection::start(int fd) {
  socket_ = PollSocket::open(loop_, fd, /*owns_fd=*/true, this);
  return socket_ != nullptr;
}

void PeerConnection::close(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  log::debug(kind_, " connection ", id_, " closed: ", reason);
  socket_.reset();
  retire_(*this);
}

}  // namespace sluice::net
