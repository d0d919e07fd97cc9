#include "daemon/upgrade/handover_link.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "daemon/upgrade/descriptor_passing.h"

namespace sluice::daemon::upgrade {
namespace {

void close_all(std::vector<int>& descriptors) {
  for (const int fd : descriptors) {
    if (fd >= 0) ::close(fd);
  }
  descriptors.clear();
}

// The channel is dead: no later message can go either.
bool peer_gone(int error) { return error == EPIPE || error == ECONNRESET || error == ENOTCONN; }

}  // namespace

HandoverLink::HandoverLink(uv_loop_t* loop, int fd, OnMessage on_message, OnClosed on_closed, Backlog backlog)
    : fd_(fd),
      reader_(std::move(backlog.reader)),
      received_(std::move(backlog.descriptors)),
      on_message_(std::move(on_message)),
      on_closed_(std::move(on_closed)) {
  poll_ = new Watch{{}, fd_};
  if (uv_poll_init(loop, &poll_->handle, fd_) != 0) {
    delete poll_;
    poll_ = nullptr;
    ::close(fd_);
    for (const int descriptor : received_) ::close(descriptor);
    received_.clear();
    return;
  }
  poll_->handle.data = this;
  update_events();
}

bool HandoverLink::send(const nlohmann::json& message, std::vector<int> descriptors, std::uint64_t tag) {
  if (!open()) {
    close_all(descriptors);
    return false;
  }
  outgoing_.push_back({encode_message(message), 0, std::move(descriptors), tag});
  flush();
  return open();
}

void HandoverLink::flush() {
  while (open() && !outgoing_.empty()) {
    Outgoing& next = outgoing_.front();
    const ssize_t sent =
        send_with_descriptors(fd_, std::string_view(next.frame).substr(next.offset), next.descriptors);
    if (sent == -EAGAIN || sent == -EWOULDBLOCK) break;
    if (sent < 0 && next.offset == 0 && !next.descriptors.empty() && !peer_gone(static_cast<int>(-sent))) {
      drop_front();
      continue;
    }
    if (sent < 0) return close(std::string("write failed: ") + std::strerror(static_cast<int>(-sent)));
    // In flight, the kernel holds the descriptors: this process's copies may go.
    close_all(next.descriptors);
    next.offset += static_cast<std::size_t>(sent);
    if (next.offset == next.frame.size()) outgoing_.pop_front();
  }
  if (!open()) return;
  update_events();
  if (outgoing_.empty() && on_flushed_) on_flushed_();
}

// Nothing of it was sent, and the kernel refused it for its descriptors' sake (more in flight than
// RLIMIT_NOFILE allows: ETOOMANYREFS; one it cannot pass: EBADF; ENOBUFS, ENOMEM): only it fails.
void HandoverLink::drop_front() {
  Outgoing dropped = std::move(outgoing_.front());
  outgoing_.pop_front();
  close_all(dropped.descriptors);
  if (on_undelivered_) on_undelivered_(dropped.tag);
}

void HandoverLink::update_events() {
  const bool writable = !outgoing_.empty();
  if (writable == watching_writable_ && uv_is_active(reinterpret_cast<uv_handle_t*>(&poll_->handle)) != 0)
    return;
  watching_writable_ = writable;
  uv_poll_start(&poll_->handle, UV_READABLE | UV_DISCONNECT | (writable ? UV_WRITABLE : 0),
                &HandoverLink::on_poll);
}

void HandoverLink::on_poll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<HandoverLink*>(handle->data);
  if (status < 0) return self->close(std::string("poll error: ") + uv_strerror(status));
  if ((events & UV_WRITABLE) != 0) self->flush();
  if (self->open() && (events & (UV_READABLE | UV_DISCONNECT)) != 0) self->read();
}

void HandoverLink::read() {
  std::array<char, 16384> buffer;
  std::vector<int> descriptors;
  const ssize_t n = receive_with_descriptors(fd_, buffer, descriptors);
  received_.insert(received_.end(), descriptors.begin(), descriptors.end());
  if (n == -EAGAIN || n == -EWOULDBLOCK) return;
  if (n == -EMSGSIZE) return close("more descriptors than a message may carry", true);
  if (n < 0) return close(std::string("read error: ") + std::strerror(static_cast<int>(-n)));
  if (n == 0) return close("the other process closed the channel");
  reader_.append({buffer.data(), static_cast<std::size_t>(n)});
  handle_messages();
}

void HandoverLink::process_backlog() {
  if (open()) handle_messages();
}

void HandoverLink::handle_messages() {
  for (;;) {
    auto message = reader_.next();
    if (!message) return close(message.error(), /*broken=*/true);
    if (!*message) return;
    const auto declared = (**message).find("fds");
    std::size_t count = 0;
    if (declared != (**message).end()) {
      if (!declared->is_number_unsigned() || declared->get<std::size_t>() > kMaxDescriptors)
        return close("a handover message declares a bad descriptor count", true);
      count = declared->get<std::size_t>();
    }
    if (count > received_.size())
      return close("a handover message came without the descriptors it declares", true);
    std::vector<int> descriptors(received_.begin(), received_.begin() + static_cast<std::ptrdiff_t>(count));
    received_.erase(received_.begin(), received_.begin() + static_cast<std::ptrdiff_t>(count));
    on_message_(**message, descriptors);
    close_all(descriptors);
    if (!open()) return;  // the handler closed us
  }
}

void HandoverLink::shut() {
  if (!open()) return;
  for (auto& outgoing : outgoing_) close_all(outgoing.descriptors);
  outgoing_.clear();
  for (const int fd : received_) ::close(fd);
  received_.clear();
  poll_->handle.data = poll_;
  uv_poll_stop(&poll_->handle);
  // The descriptor closes with the handle, as libuv requires.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_->handle), [](uv_handle_t* handle) {
    auto* watch = static_cast<Watch*>(handle->data);
    ::close(watch->fd);
    delete watch;
  });
  poll_ = nullptr;
}

void HandoverLink::close(const std::string& reason, bool broken) {
  if (!open()) return;
  shut();
  if (on_closed_) on_closed_(reason, broken);
}

}  // namespace sluice::daemon::upgrade
