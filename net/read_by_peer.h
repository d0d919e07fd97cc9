// Waits until the peer of a stream socket has read every byte written to it: what a cancel for
// a statement just sent needs, for PostgreSQL ignores a cancel that reaches a backend while it is
// still reading its input. The kernel counts the bytes the peer has not read (SIOCOUTQ: on a Unix
// socket, not yet read by the peer; on TCP, not yet acknowledged); they are polled each
// millisecond, on the loop, for at most a given time.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "net/loop_timer.h"

namespace sluice::net {

class ReadByPeer {
 public:
  // `done` runs on the loop, once: when nothing written is left unread and `pending_output()`
  // (bytes not written yet) is false, or when `limit` has passed. Destroying this first calls nothing.
  static std::unique_ptr<ReadByPeer> watch(uv_loop_t* loop, int fd, std::function<bool()> pending_output,
                                           std::chrono::milliseconds limit, std::function<void()> done);
  ReadByPeer(const ReadByPeer&) = delete;
  ReadByPeer& operator=(const ReadByPeer&) = delete;

  // True when the peer has read everything written to `fd` (or the kernel cannot tell).
  static bool all_read(int fd);

 private:
  explicit ReadByPeer(uv_loop_t* loop) : timer_(loop, [this] { poll(); }) {}
  void poll();

  int fd_ = -1;
  std::function<bool()> pending_output_;
  std::function<void()> done_;
  std::uint64_t deadline_ms_ = 0;
  LoopTimer timer_;
};

}  // namespace sluice::net
