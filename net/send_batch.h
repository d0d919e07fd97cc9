// The sends that sockets write while a loop turn serves the events of one poll, made together once
// it has served them: the replies to clients and the queries to servers.
// With two or more queued, one io_uring_enter makes them all: on a kernel with page-table isolation
// a system call costs about a microsecond of entry and exit alone (bench/syscall_cost.c), and at 50
// clients a turn writes to a dozen clients and as many servers. Each is a MSG_DONTWAIT send, which
// io_uring makes at once and answers with EAGAIN rather than waiting: a flush never blocks and
// leaves no send in flight, and what the kernel did not take becomes the socket's pending output,
// as a plain send's remainder does. Without io_uring (an older kernel, a seccomp filter refusing
// io_uring_setup) the queued sends are made one by one.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sluice::net {

class PollSocket;

// What a batched send came to for its socket: all taken, a remainder kept, a hard error.
enum class BatchResult : std::uint8_t { sent, backed_up, failed };

class SendBatch {
 public:
  // Sockets with bytes queued at most: a turn with more would hold the first sends back while it
  // serves the rest, so the rest go at once. At 50 clients a turn writes, for each transaction it
  // ends, a reply and the next client's query: 16 were full in three turns of four. Also the
  // ring's size.
  static constexpr unsigned kMaxSockets = 64;

  SendBatch() = default;
  ~SendBatch();
  SendBatch(const SendBatch&) = delete;
  SendBatch& operator=(const SendBatch&) = delete;

  // Set by the reactor while the turn has events left to serve after this one (any of the poll's): only then
  // can a socket start queuing. A turn with one event (a lone client) sends at once.
  void set_more_to_come(bool more) { more_to_come_ = more; }
  [[nodiscard]] bool more_to_come() const { return more_to_come_; }
  // Queues `bytes` for `socket` after what it queued before: when more events are to come, the
  // socket has no pending output, the write is small and the batch has room; or when the socket
  // has bytes queued and they and this write stay small. False when the caller must send them
  // itself: the socket's queued bytes, if any, were sent first (what the kernel did not take is
  // then its pending output).
  [[nodiscard]] bool queue(PollSocket& socket, std::span<const std::uint8_t> bytes);
  // Makes the io_uring now, on the thread that runs the loop: made on another thread, its
  // teardown interrupted that thread's next blocking system call (EINTR). A turn makes it at its
  // first use otherwise. False when the kernel refuses it.
  bool make_ring();
  // Makes the queued sends and tells each socket what the kernel took.
  void flush() {
    if (!entries_.empty()) send_all();
  }
  // Sends `socket`'s queued bytes now, on their own (before it closes, or starts TLS); what the
  // kernel does not take becomes its pending output.
  void send_now(PollSocket& socket);

 private:
  // A socket's bytes queued at most: past them it sends at once. Also bounds what a socket's
  // bytes cost to move behind another's (queue).
  static constexpr std::size_t kMaxQueuedBytes = std::size_t{16} * 1024;
  // A flush gives the ring up at this many failed io_uring_enter calls (EINTR, EAGAIN, EBUSY; any
  // other error at once).
  static constexpr int kMaxFailedEnters = 8;

  struct Entry {
    PollSocket* socket;  // null once its bytes were taken out
    std::size_t offset;  // in bytes_
    std::size_t size;
  };

  // The queued socket's entry: the last that names it.
  Entry* entry_of(const PollSocket& socket);
  // Takes `socket`'s queued bytes out of the batch, appending them to `into`.
  void take_queued(PollSocket& socket, std::string& into);
  void send_all();
  // Fill results_: bytes the kernel took, or -errno.
  void send_with_io_uring();
  void send_one_by_one();
  // Waits for the answers to `submitted` sends and records them; false when the ring failed.
  bool reap(unsigned submitted);
  // Records the answers the completion queue holds; returns how many.
  unsigned take_answers();
  // After the ring failed: makes the sends it never took, fails those it took without an answer,
  // and leaves the ring for plain sends.
  void give_up_ring();

  std::vector<Entry> entries_;
  std::string bytes_;
  unsigned sockets_ = 0;  // entries_ that name one
  bool more_to_come_ = false;
  // What send_all sends, swapped out of entries_ and bytes_: the batch is empty again before any
  // handler hears of its socket's send.
  std::vector<Entry> sending_;
  std::string sending_bytes_;
  std::vector<int> results_;
  std::vector<BatchResult> outcomes_;
  std::vector<std::size_t> submitted_;  // sending_'s entries in the order of their sends in the ring
  enum class Ring { unmade, ready, refused };
  Ring ring_ = Ring::unmade;
  io_uring io_uring_{};
};

}  // namespace sluice::net
