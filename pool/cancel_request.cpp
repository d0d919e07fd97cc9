#include "pool/cancel_request.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "protocol/wire.h"

namespace sluice::pool {
namespace {

constexpr std::uint32_t kCancelRequestCode = 80877102;  // 1234 << 16 | 5678

// libpq 15 has no call that returns a backend's secret key, nor a non-blocking
// cancel (PQcancelStart came in 17). The key is read from the head of its
// PGcancel, whose layout (libpq-int.h: a SockAddr, then be_pid and be_key) has
// not changed since protocol 3.0; the process id read beside it is checked
// against PQbackendPID, so a different layout is noticed and never trusted.
struct SockAddrMirror {  // its own struct there: padded to sockaddr_storage's alignment
  sockaddr_storage address;
  socklen_t address_length;
};
struct PGcancelHead {
  SockAddrMirror remote;
  int process_id;
  int secret;
};

std::string errno_text(int error) { return std::strerror(error); }

}  // namespace

std::optional<CancelKey> cancel_key_of(PGconn* conn) {
  // libpq 17 and later lay PGcancel out otherwise (and have PQcancelStart instead).
  constexpr int kFirstOtherLayout = 170000;
  if (PQlibVersion() >= kFirstOtherLayout) return std::nullopt;
  PGcancel* cancel = PQgetCancel(conn);
  if (cancel == nullptr) return std::nullopt;
  const auto* head = reinterpret_cast<const PGcancelHead*>(cancel);
  const int process_id = head->process_id;
  const int secret = head->secret;
  PQfreeCancel(cancel);
  if (process_id == 0 || process_id != PQbackendPID(conn)) return std::nullopt;

  // The address is the one libpq's socket is connected to (the postmaster's).
  CancelKey key;
  key.address_length = sizeof key.address;
  if (::getpeername(PQsocket(conn), reinterpret_cast<sockaddr*>(&key.address), &key.address_length) != 0) {
    return std::nullopt;
  }
  key.process_id = static_cast<std::uint32_t>(process_id);
  key.secret = static_cast<std::uint32_t>(secret);
  return key;
}

Result<std::unique_ptr<CancelRequest>> CancelRequest::start(uv_loop_t* loop, const CancelKey& key,
                                                            Done done) {
  std::unique_ptr<CancelRequest> request(new CancelRequest(std::move(done)));
  request->fd_ = ::socket(key.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (request->fd_ < 0) return fail("socket: " + errno_text(errno));
  if (::connect(request->fd_, reinterpret_cast<const sockaddr*>(&key.address), key.address_length) != 0 &&
      errno != EINPROGRESS) {
    return fail("connect: " + errno_text(errno));
  }
  protocol::append_u32(request->packet_, 16);
  protocol::append_u32(request->packet_, kCancelRequestCode);
  protocol::append_u32(request->packet_, key.process_id);
  protocol::append_u32(request->packet_, key.secret);

  auto poll = std::make_unique<Poll>();
  if (const int rc = uv_poll_init_socket(loop, &poll->handle, request->fd_); rc != 0) {
    return fail(std::string("uv_poll_init: ") + uv_strerror(rc));
  }
  poll->fd = request->fd_;
  poll->handle.data = request.get();
  request->poll_ = poll.release();
  uv_poll_start(&request->poll_->handle, UV_WRITABLE, &CancelRequest::on_poll);
  return request;
}

CancelRequest::~CancelRequest() {
  if (poll_ != nullptr) {
    // The fd goes with the handle, in its close callback, as libuv requires.
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_->handle), [](uv_handle_t* handle) {
      std::unique_ptr<Poll> poll(reinterpret_cast<Poll*>(handle));  // handle is Poll's first member
      ::close(poll->fd);
    });
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
}

void CancelRequest::on_poll(uv_poll_t* handle, int status, int events) {
  static_cast<CancelRequest*>(handle->data)->on_event(status, events);
}

void CancelRequest::on_event(int status, int events) {
  const bool sent_any = sent_ > 0;
  if (status < 0) {
    return finish(sent_any ? CancelResult::unknown : CancelResult::not_sent,
                  std::string("socket: ") + uv_strerror(status));
  }
  if (sent_ < packet_.size()) {
    if ((events & UV_WRITABLE) != 0) send_packet();
    return;
  }
  char byte = 0;
  const ssize_t n = ::recv(fd_, &byte, 1, 0);
  if (n == 0) return finish(CancelResult::delivered, "");
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n < 0) return finish(CancelResult::unknown, "waiting for the hang-up: " + errno_text(errno));
  // The postmaster answers a cancel with nothing: keep waiting for the hang-up.
}

void CancelRequest::send_packet() {
  int error = 0;
  socklen_t length = sizeof error;
  if (sent_ == 0 && ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error != 0) {
    return finish(CancelResult::not_sent, "connect: " + errno_text(error));
  }
  const ssize_t n = ::send(fd_, packet_.data() + sent_, packet_.size() - sent_, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    const int send_error = errno;
    return finish(sent_ > 0 ? CancelResult::unknown : CancelResult::not_sent,
                  "send: " + errno_text(send_error));
  }
  sent_ += static_cast<std::size_t>(n);
  if (sent_ == packet_.size())
    uv_poll_start(&poll_->handle, UV_READABLE | UV_DISCONNECT, &CancelRequest::on_poll);
}

void CancelRequest::finish(CancelResult result, const std::string& detail) {
  uv_poll_stop(&poll_->handle);
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(result, detail);  // may destroy this request
}

}  // namespace sluice::pool
