#include "daemon/listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "common/log.h"
#include "daemon/upgrade/inherited_sockets.h"

namespace sluice::daemon {
namespace {

constexpr int kBacklog = 4096;
constexpr std::chrono::milliseconds kAcceptRetry(100);

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<Listener>> Listener::open_unix(uv_loop_t* loop, const std::string& path, unsigned mode,
                                                      AcceptCallback on_accept) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return fail("socket path too long: " + path);
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  auto listener =
      std::unique_ptr<Listener>(new Listener(Transport::unix_socket, path, path, std::move(on_accept)));
  if (const auto inherited = upgrade::take_inherited_socket(listener->key())) {
    return start(loop, *inherited, std::move(listener));
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(errno_text("socket"));
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::chmod(path.c_str(), mode) != 0 || ::listen(fd, kBacklog) != 0) {
    auto error = fail(errno_text("cannot listen on " + path));
    ::close(fd);
    return error;
  }
  return start(loop, fd, std::move(listener));
}

Result<std::unique_ptr<Listener>> Listener::open_tcp(uv_loop_t* loop, const std::string& address_text,
                                                     AcceptCallback on_accept) {
  if (const auto inherited = upgrade::take_inherited_socket(key_for(Transport::tcp, address_text))) {
    return start(
        loop, *inherited,
        std::unique_ptr<Listener>(new Listener(Transport::tcp, address_text, "", std::move(on_accept))));
  }
  const auto colon = address_text.rfind(':');
  if (colon == std::string::npos) return fail("listen.tcp must be host:port, got " + address_text);
  std::string host = address_text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address_text.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  // Startup only, before the loop runs: a blocking lookup is harmless here.
  if (const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return fail("cannot resolve " + address_text + ": " + gai_strerror(rc));
  }
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  if (fd < 0) {
    ::freeaddrinfo(found);
    return fail(errno_text("socket"));
  }
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd, kBacklog) == 0;
  ::freeaddrinfo(found);
  if (!ok) {
    auto error = fail(errno_text("cannot listen on " + address_text));
    ::close(fd);
    return error;
  }
  return start(
      loop, fd,
      std::unique_ptr<Listener>(new Listener(Transport::tcp, address_text, "", std::move(on_accept))));
}

Result<std::unique_ptr<Listener>> Listener::start(uv_loop_t* loop, int fd,
                                                  std::unique_ptr<Listener> listener) {
  listener->retry_timer_ = std::make_unique<net::LoopTimer>(loop, [self = listener.get()] {
    if (self->socket_) self->socket_->set_reading(true);
  });
  listener->socket_ = net::PollSocket::open(loop, fd, /*owns_fd=*/true, listener.get());
  if (!listener->socket_) return fail("cannot watch listening socket " + listener->name_);
  return listener;
}

Listener::~Listener() { close(); }

std::string Listener::key_for(Transport transport, const std::string& name) {
  return (transport == Transport::unix_socket ? "unix:" : "tcp:") + name;
}

void Listener::hand_over() {
  unlink_path_.clear();
  close();
}

void Listener::close() {
  if (retry_timer_) retry_timer_->stop();
  socket_.reset();
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
  unlink_path_.clear();
}

void Listener::on_readable() {
  // One connection per wake-up: the listener stays readable while its backlog holds more (epoll is
  // level-triggered), so the next loop turn takes the next one, between the other sockets' work.
  // Draining it here would end every wake-up with an accept that fails with EAGAIN: one system call
  // more per connection when clients connect one at a time, as most do.
  for (;;) {
    const int fd = ::accept4(socket_->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // Out of descriptors: the backlog stays readable, so polling on would spin.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        return pause_accepting(errno);
      log::warning("accept on ", name_, ": ", std::strerror(errno));
      return;
    }
    if (failed_accepts_ > 0) [[unlikely]] {
      log::info("accepting on ", name_, " again, after ", failed_accepts_, " attempts failed for want of ",
                "descriptors or memory");
      failed_accepts_ = 0;
    }
    if (transport_ == Transport::tcp) {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    on_accept_(fd, transport_);
    return;
  }
}

// Said once, when it starts: the retries would say it ten times a second for as long as it lasts.
void Listener::pause_accepting(int error) {
  if (failed_accepts_++ == 0) {
    const bool descriptors = error == EMFILE || error == ENFILE;
    log::warning("accept on ", name_, ": ", std::strerror(error),
                 ": new clients wait in the listen backlog; retrying every ", kAcceptRetry.count(),
                 " ms until ", descriptors ? "descriptors are" : "memory is", " freed");
  }
  socket_->set_reading(false);
  retry_timer_->start(kAcceptRetry);
}

void Listener::on_socket_error(int uv_status) {
  log::error("listener ", name_, ": ", uv_strerror(uv_status));
}

}  // namespace sluice::daemon
