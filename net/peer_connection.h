// One accepted peer of a small server on the loop (the control socket, /metrics): it owns its
// socket, closes exactly once, and is then handed back to its server, which frees it on a later
// turn (never inside the callback that closed it).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string_view>

#include "net/poll_socket.h"

namespace sluice::net {

class PeerConnection : protected PollSocket::Handler {
 public:
  // `retire` takes the closed connection out of its server's list, to be freed later.
  using Retire = std::function<void(PeerConnection&)>;

  PeerConnection(uv_loop_t* loop, std::string_view kind, std::uint64_t id, Retire retire)
      : loop_(loop), id_(id), kind_(kind), retire_(std::move(retire)) {}
  virtual ~PeerConnection() { socket_.reset(); }
  PeerConnection(const PeerConnection&) = delete;
  PeerConnection& operator=(const PeerConnection&) = delete;

  // Watches `fd`, which it owns from now on; false when it cannot.
  bool start(int fd);
  // Idempotent. Stops the socket now; the object is freed on a later turn.
  void close(std::string_view reason);

  [[nodiscard]] std::uint64_t id() const { return id_; }

 protected:
  uv_loop_t* loop_;
  std::uint64_t id_;
  PollSocket::Ptr socket_;
  bool closed_ = false;

 private:
  std::string_view kind_;  // "control", "metrics": for the log
  Retire retire_;
};

}  // namespace sluice::net
