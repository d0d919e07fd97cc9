// The handover channel on a loop, once both processes serve: the old process
// reports its drain progress, the new one forwards cancel requests it cannot
// place. Messages in both directions are small and rare.
#pragma once

#include <uv.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/upgrade/handover_protocol.h"
#include "net/poll_socket.h"

namespace sluice::daemon::upgrade {

class HandoverLink final : net::PollSocket::Handler {
 public:
  using OnMessage = std::function<void(const nlohmann::json&)>;
  // The peer closed the channel, or (`broken`) sent what is not a handover message; called once,
  // after which nothing arrives.
  using OnClosed = std::function<void(const std::string& reason, bool broken)>;

  // Takes `fd` (non-blocking) and watches it on `loop`.
  HandoverLink(uv_loop_t* loop, int fd, OnMessage on_message, OnClosed on_closed);
  ~HandoverLink() = default;
  HandoverLink(const HandoverLink&) = delete;
  HandoverLink& operator=(const HandoverLink&) = delete;

  // Queues a message; false once the channel is closed.
  bool send(const nlohmann::json& message);
  // Closes without calling on_closed (the owner gave up on the peer); safe inside on_message.
  void shut() { socket_.reset(); }
  [[nodiscard]] bool open() const { return socket_ != nullptr; }
  [[nodiscard]] int fd() const { return socket_ ? socket_->fd() : -1; }

 private:
  void on_readable() override;
  void on_drained() override {}
  void on_socket_error(int uv_status) override;
  void close(const std::string& reason, bool broken = false);

  net::PollSocket::Ptr socket_;
  MessageReader reader_;
  OnMessage on_message_;
  OnClosed on_closed_;
};

}  // namespace sluice::daemon::upgrade
