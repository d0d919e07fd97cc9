// A listening socket (Unix or TCP) that accepts without blocking and hands
// each new connection's fd to its owner.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "net/loop_timer.h"
#include "net/poll_socket.h"

namespace sluice::daemon {

enum class Transport { unix_socket, tcp };

class Listener final : net::PollSocket::Handler {
 public:
  using AcceptCallback = std::function<void(int fd, Transport transport)>;

  // Binds `path` (a stale socket file is replaced) with the given file mode, or takes the
  // socket inherited for it in a live upgrade (daemon/upgrade/inherited_sockets.h).
  static Result<std::unique_ptr<Listener>> open_unix(uv_loop_t* loop, const std::string& path, unsigned mode,
                                                     AcceptCallback on_accept);
  // Binds "host:port", or takes the socket inherited for it.
  static Result<std::unique_ptr<Listener>> open_tcp(uv_loop_t* loop, const std::string& address,
                                                    AcceptCallback on_accept);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }
  // What identifies this socket across a live upgrade: "unix:<path>" or "tcp:<host:port>".
  [[nodiscard]] std::string key() const { return key_for(transport_, name_); }
  static std::string key_for(Transport transport, const std::string& name);
  // The listening socket (for handing it over); -1 once handed over.
  [[nodiscard]] int fd() const { return socket_ ? socket_->fd() : -1; }
  // Live upgrade, once the new process accepts on the same socket: stop accepting and close
  // this process's descriptor, leaving the socket file (the new process listens on it).
  void hand_over();
  // Stops accepting and closes the socket (and removes its file, unless handed over).
  void close();

 private:
  Listener(Transport transport, std::string name, std::string unlink_path, AcceptCallback on_accept)
      : transport_(transport),
        name_(std::move(name)),
        unlink_path_(std::move(unlink_path)),
        on_accept_(std::move(on_accept)) {}
  static Result<std::unique_ptr<Listener>> start(uv_loop_t* loop, int fd, std::unique_ptr<Listener> listener);

  void on_readable() override;
  void on_drained() override {}
  void on_socket_error(int uv_status) override;
  void pause_accepting(int error);

  Transport transport_;
  std::string name_;
  std::string unlink_path_;  // the Unix socket file, removed on close
  AcceptCallback on_accept_;
  net::PollSocket::Ptr socket_;
  std::unique_ptr<net::LoopTimer> retry_timer_;  // set by start()
  std::uint64_t failed_accepts_ = 0;             // since accepting last succeeded, for want of descriptors
};

}  // namespace sluice::daemon
