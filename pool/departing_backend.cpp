#include "pool/departing_backend.h"

#include <sys/socket.h>

#include <utility>

namespace sluice::pool {

DepartingBackend::DepartingBackend(uv_loop_t* loop, int fd, std::string server, Owner& owner)
    : owner_(owner), server_(std::move(server)) {
  ::shutdown(fd, SHUT_WR);
  socket_ = net::PollSocket::open(loop, fd, /*owns_fd=*/true, this);
}

// The end of the stream is the backend gone. Bytes instead are a backend still at work after the
// goodbye (an abandoned query's rows): the copy is closed with them unread, which resets the
// connection, so its next write fails and it ends as it did before this watch — soon, and unseen.
void DepartingBackend::on_readable() { departed(); }

void DepartingBackend::departed() {
  socket_.reset();
  owner_.backend_departed(*this);
}

}  // namespace sluice::pool
