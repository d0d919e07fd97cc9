#include "net/poll_socket.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace sluice::net {

PollSocket::Ptr PollSocket::open(uv_loop_t* loop, int fd, bool owns_fd, Handler* handler) {
  auto* socket = new PollSocket(loop, fd, owns_fd, handler);
  if (!socket->reactor_.add(fd, EPOLLIN, socket)) {
    if (owns_fd) ::close(fd);
    delete socket;
    return nullptr;
  }
  socket->watched_events_ = EPOLLIN;
  return Ptr(socket);
}

void PollSocket::close_when_flushed(Ptr socket) {
  PollSocket* self = socket.release();
  self->handler_ = nullptr;
  if (!self->has_pending_output()) return self->close();
  self->close_when_flushed_ = true;
  self->reading_ = false;
  self->update_events();
}

std::string PollSocket::describe_error(int uv_status) {
  if (uv_status == UV_EBADF) return "connection reset or failed";
  return uv_strerror(uv_status);
}

void PollSocket::close() {
  if (closing_) return;
  closing_ = true;
  handler_ = nullptr;
  send_queued_now();  // as a write before the close would have
  if (tls_) tls_->shutdown();
  // Out of the epoll before the close, always: a close takes it out only with the last reference
  // to its file, and others may hold one (a live upgrade's other process; for a moment, whoever
  // reads /proc/PID/fd: lsof, and sluiced itself counting its descriptors for `status`). A stale
  // entry would hand its freed watcher to the next poll. The DEL costs about a microsecond here
  // (bench/syscall_cost.c).
  reactor_.release(this, watched_events_ != 0 ? fd_ : -1);
  if (owns_fd_) ::close(fd_);
}

bool PollSocket::start_tls(std::shared_ptr<const config::TlsContext> context, TlsChannel::Start start) {
  send_queued_now();  // the 'S' goes first, in plain text
  if (closing_ || tls_ || !pending_.empty()) return false;
  tls_ = TlsChannel::accept(fd_, std::move(context), start);
  encrypted_ = tls_ != nullptr;
  return encrypted_;
}

bool PollSocket::use_tls(std::unique_ptr<TlsChannel> established) {
  if (closing_ || tls_ || !pending_.empty()) return false;
  tls_ = std::move(established);
  encrypted_ = tls_ != nullptr;
  return true;
}

int PollSocket::peek_byte() const {
  unsigned char byte = 0;
  for (;;) {
    const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK);
    if (n == 1) return byte;
    if (n == 0) return -ENODATA;
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return -EAGAIN;
    return -errno;
  }
}

ssize_t PollSocket::read(void* buffer, std::size_t size) {
  if (encrypted_) [[unlikely]]
    return read_tls(buffer, size);
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, size, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return -EAGAIN;
    return -errno;
  }
}

ssize_t PollSocket::read_tls(void* buffer, std::size_t size) {
  const TlsChannel::Io io = tls_->read(buffer, size);
  const bool wants_writable = io.status == TlsChannel::Status::want_write;
  if (wants_writable != tls_read_wants_writable_) {
    tls_read_wants_writable_ = wants_writable;
    update_events();
  }
  switch (io.status) {
    case TlsChannel::Status::done:
      return static_cast<ssize_t>(io.bytes);
    case TlsChannel::Status::want_read:
    case TlsChannel::Status::want_write:
      return -EAGAIN;
    case TlsChannel::Status::closed:
      return 0;
    case TlsChannel::Status::failed:
      break;
  }
  return -EPROTO;
}

bool PollSocket::write(std::span<const std::uint8_t> bytes) {
  if (closing_) return false;
  if (encrypted_) [[unlikely]]
    return write_tls(bytes);
  // Refused, the batch has sent this socket's queued bytes first; a remainder of theirs is pending_.
  // The batch's first test is made here, inline: a lone client's turn makes no call.
  SendBatch& batch = reactor_.send_batch();
  if (batched_ && (queued_ || batch.more_to_come()) && batch.queue(*this, bytes)) return true;
  if (pending_.empty()) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n >= 0) {
        bytes = bytes.subspan(static_cast<std::size_t>(n));
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    if (bytes.empty()) return true;
  }
  pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  update_events();
  return true;
}

bool PollSocket::write_tls(std::span<const std::uint8_t> bytes) {
  if (!tls_->established()) return true;
  if (pending_.empty()) {
    while (!bytes.empty()) {
      const TlsChannel::Io io = tls_->write(bytes.data(), bytes.size());
      if (io.status == TlsChannel::Status::done) {
        bytes = bytes.subspan(io.bytes);
        continue;
      }
      if (io.status == TlsChannel::Status::want_write) break;
      return false;  // want_read too: with renegotiation off, nothing would ever answer it
    }
    if (bytes.empty()) return true;
  }
  pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  update_events();
  return true;
}

bool PollSocket::flush_tls() {
  while (pending_offset_ < pending_.size()) {
    // After want_write OpenSSL expects the same bytes again: pending_ starts with them.
    const TlsChannel::Io io =
        tls_->write(pending_.data() + pending_offset_, pending_.size() - pending_offset_);
    if (io.status == TlsChannel::Status::done) {
      pending_offset_ += io.bytes;
      continue;
    }
    return io.status == TlsChannel::Status::want_write;
  }
  return true;
}

void PollSocket::set_reading(bool reading) {
  if (reading_ == reading || closing_) return;
  reading_ = reading;
  // Bytes OpenSSL holds: the kernel will not announce them, so a writable event stands in.
  if (reading && tls_ && tls_->has_buffered_plaintext()) [[unlikely]]
    tls_read_wants_writable_ = true;
  update_events();
}

void PollSocket::update_events() {
  if (closing_) return;  // released: the reactor is done with its descriptor
  const bool want_writable = !pending_.empty();
  // The stand-in writable event only while reading: paused, it would wake the loop for nothing.
  const std::uint32_t watched =
      (reading_ ? std::uint32_t{EPOLLIN} : 0U) |
      (want_writable || (reading_ && tls_read_wants_writable_) ? std::uint32_t{EPOLLOUT} : 0U);
  watching_writable_ = want_writable;
  reactor_.change(fd_, watched_events_, watched, this);
  watched_events_ = watched;
}

void PollSocket::flush() {
  if (tls_) [[unlikely]] {
    if (!flush_tls()) {
      if (close_when_flushed_) return close();
      if (handler_ != nullptr) handler_->on_socket_error(UV_EPROTO);
      return;
    }
    if (pending_offset_ < pending_.size()) return;
  }
  while (pending_offset_ < pending_.size()) {
    const ssize_t n =
        ::send(fd_, pending_.data() + pending_offset_, pending_.size() - pending_offset_, MSG_NOSIGNAL);
    if (n >= 0) {
      pending_offset_ += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (close_when_flushed_) return close();
    if (handler_ != nullptr) handler_->on_socket_error(-errno);
    return;
  }
  if (close_when_flushed_) return close();
  // Drained: give the buffer's memory back, an idle connection keeps none.
  std::string().swap(pending_);
  pending_offset_ = 0;
  update_events();
  if (handler_ != nullptr) handler_->on_drained();
}

BatchResult PollSocket::keep_batch_remainder(std::span<const std::uint8_t> unsent, int error) {
  if (error != 0) return BatchResult::failed;
  if (closing_ || unsent.empty()) return BatchResult::sent;
  pending_.assign(reinterpret_cast<const char*>(unsent.data()), unsent.size());  // empty while queued
  update_events();
  return BatchResult::backed_up;
}

void PollSocket::report_batch_result(BatchResult result, int error) {
  if (closing_) return;
  switch (result) {
    case BatchResult::failed:
      if (close_when_flushed_) return close();
      if (handler_ != nullptr) handler_->on_socket_error(-error);
      return;
    case BatchResult::backed_up:
      if (handler_ != nullptr && !pending_.empty()) handler_->on_backed_up();
      return;
    case BatchResult::sent:
      if (!pending_.empty()) return;  // a later write's remainder: flush() reports it drained
      if (close_when_flushed_) return close();
      if (handler_ != nullptr) handler_->on_drained();
      return;
  }
}

void PollSocket::on_events(std::uint32_t epoll_events) {
  if (closing_) return;
  if ((epoll_events & EPOLLERR) != 0) {
    // Watched no more until asked again, as libuv stops a poll handle that reports an error.
    reactor_.change(fd_, watched_events_, 0, this);
    watched_events_ = 0;
    if (close_when_flushed_) return close();
    if (handler_ != nullptr) handler_->on_socket_error(UV_EBADF);
    return;
  }
  // A hang-up is read as what is watched: the read or the write then finds it.
  const bool hung_up = (epoll_events & EPOLLHUP) != 0;
  const bool writable = (epoll_events & EPOLLOUT) != 0 || (hung_up && (watched_events_ & EPOLLOUT) != 0);
  const bool readable_event = (epoll_events & EPOLLIN) != 0 || (hung_up && (watched_events_ & EPOLLIN) != 0);
  if (writable && watching_writable_) flush();
  // A handler may close the socket; its memory lives until the next poll.
  const bool readable = readable_event || (writable && tls_read_wants_writable_);
  if (readable && !closing_ && reading_ && handler_ != nullptr) {
    handler_->on_readable();
    // Decrypted bytes OpenSSL kept back from a short read: the kernel will not announce them again.
    while (encrypted_ && !closing_ && reading_ && handler_ != nullptr && tls_->has_buffered_plaintext()) {
      handler_->on_readable();
    }
  }
}

}  // namespace sluice::net
