// The handover channel on a loop, once both processes serve: the old process
// reports its drain progress and hands over its clients (each message with the
// client's socket attached, SCM_RIGHTS), the new one forwards cancel requests it
// cannot place. A message that carries descriptors says how many ("fds"): they
// arrive with its first byte, in the order sent.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/upgrade/handover_protocol.h"

namespace sluice::daemon::upgrade {

class HandoverLink {
 public:
  // `descriptors`: those the message declared. The handler takes what it keeps (moves them out of
  // the vector); the link closes the rest.
  using OnMessage = std::function<void(const nlohmann::json& message, std::vector<int>& descriptors)>;
  // The peer closed the channel, or (`broken`) sent what is not a handover message; called once,
  // after which nothing arrives.
  using OnClosed = std::function<void(const std::string& reason, bool broken)>;
  // A message the kernel refused for its own sake (a descriptor it will not pass) was dropped, its
  // descriptors closed; the channel goes on. `tag`: what send() was given.
  using OnUndelivered = std::function<void(std::uint64_t tag)>;
  // What was read before the link took the channel over (its blocking start): bytes of messages
  // not yet handled, and the descriptors that came with them.
  struct Backlog {
    MessageReader reader;
    std::deque<int> descriptors;
  };

  // Takes `fd` (non-blocking) and watches it on `loop`; messages already in `backlog` are handled
  // on the first readable event or the next process_backlog().
  HandoverLink(uv_loop_t* loop, int fd, OnMessage on_message, OnClosed on_closed, Backlog backlog = {});
  ~HandoverLink() { shut(); }
  HandoverLink(const HandoverLink&) = delete;
  HandoverLink& operator=(const HandoverLink&) = delete;

  // Queues a message with `descriptors`, which the link owns from now on (closed once sent, or
  // when the channel closes first). False once the channel is closed.
  bool send(const nlohmann::json& message, std::vector<int> descriptors = {}, std::uint64_t tag = 0);
  // Handles the complete messages the backlog holds.
  void process_backlog();
  // Closes without calling on_closed (the owner gave up on the peer); safe inside on_message.
  void shut();
  [[nodiscard]] bool open() const { return poll_ != nullptr; }
  [[nodiscard]] int fd() const { return fd_; }
  // Everything queued has reached the kernel (the peer reads it even after this process exits).
  [[nodiscard]] bool flushed() const { return outgoing_.empty(); }
  // Called each time the queue empties.
  void on_flushed(std::function<void()> call) { on_flushed_ = std::move(call); }
  void on_undelivered(OnUndelivered call) { on_undelivered_ = std::move(call); }

 private:
  struct Outgoing {
    std::string frame;
    std::size_t offset = 0;
    std::vector<int> descriptors;  // go with the first byte
    std::uint64_t tag = 0;
  };
  static void on_poll(uv_poll_t* handle, int status, int events);
  void read();
  void handle_messages();
  void flush();
  void drop_front();
  void update_events();
  void close(const std::string& reason, bool broken = false);

  // The poll handle and its descriptor: freed and closed together in the handle's close callback.
  struct Watch {
    uv_poll_t handle{};
    int fd = -1;
  };
  Watch* poll_ = nullptr;
  int fd_;
  bool watching_writable_ = false;
  MessageReader reader_;
  std::deque<int> received_;  // descriptors not yet claimed by a message
  std::deque<Outgoing> outgoing_;
  OnMessage on_message_;
  OnClosed on_closed_;
  std::function<void()> on_flushed_;
  OnUndelivered on_undelivered_;
};

}  // namespace sluice::daemon::upgrade
