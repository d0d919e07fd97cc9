#include "net/send_batch.h"

#include <sys/socket.h>

#include <cerrno>
#include <climits>

#include "net/poll_socket.h"

namespace sluice::net {

namespace {

// Never waits: a socket whose buffer is full answers EAGAIN at once (io_uring then arms no poll).
constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT;
// No answer yet: neither a byte count nor an -errno.
constexpr int kUnanswered = INT_MIN;

// A send's hard error (errno), or 0: EAGAIN and EINTR leave the rest for when it is writable.
int error_of(int result) { return result < 0 && result != -EAGAIN && result != -EINTR ? -result : 0; }

// Bytes the kernel took, or -errno.
int send_plain(int fd, const char* data, std::size_t size) {
  for (;;) {
    const ssize_t n = ::send(fd, data, size, kSendFlags);
    if (n >= 0) return static_cast<int>(n);
    if (errno != EINTR) return -errno;
  }
}

}  // namespace

SendBatch::~SendBatch() {
  if (ring_ == Ring::ready) io_uring_queue_exit(&io_uring_);
}

bool SendBatch::make_ring() {
  if (ring_ != Ring::unmade) return ring_ == Ring::ready;
  ring_ = Ring::refused;
  if (io_uring_queue_init(kMaxSockets, &io_uring_, 0) != 0) return false;
  // io_uring came with Linux 5.1, its send with 5.6: on a kernel between, every send would fail.
  io_uring_probe* probe = io_uring_get_probe_ring(&io_uring_);
  const bool sends = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SEND) != 0;
  io_uring_free_probe(probe);
  if (!sends) {
    io_uring_queue_exit(&io_uring_);
    return false;
  }
  ring_ = Ring::ready;
  return true;
}

bool SendBatch::queue(PollSocket& socket, std::span<const std::uint8_t> bytes) {
  if (!socket.queued_) {
    // Behind a remainder the kernel refused, bytes wait in the socket's pending output, in order.
    if (!more_to_come_ || !socket.pending_.empty() || bytes.size() > kMaxQueuedBytes ||
        sockets_ == kMaxSockets)
      return false;
    entries_.push_back({&socket, bytes_.size(), 0});
    socket.queued_ = true;
    ++sockets_;
  } else if (Entry* queued = entry_of(socket); queued->size + bytes.size() > kMaxQueuedBytes) {
    send_now(socket);
    return false;
  } else if (queued != &entries_.back()) {
    // Queued earlier, behind others: its bytes move to the end, so that one send carries them all
    // in order.
    const Entry moved{&socket, bytes_.size(), queued->size};
    bytes_.append(bytes_, queued->offset, queued->size);
    queued->socket = nullptr;
    entries_.push_back(moved);
  }
  entries_.back().size += bytes.size();
  bytes_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return true;
}

SendBatch::Entry* SendBatch::entry_of(const PollSocket& socket) {
  for (std::size_t i = entries_.size(); i-- > 0;) {
    if (entries_[i].socket == &socket) return &entries_[i];
  }
  return nullptr;
}

void SendBatch::take_queued(PollSocket& socket, std::string& into) {
  Entry* entry = entry_of(socket);
  into.append(bytes_, entry->offset, entry->size);
  entry->socket = nullptr;
  socket.queued_ = false;
  --sockets_;
}

void SendBatch::send_now(PollSocket& socket) {
  std::string bytes;
  take_queued(socket, bytes);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const int n = send_plain(socket.fd_, bytes.data() + sent, bytes.size() - sent);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  if (sent == bytes.size()) return;
  socket.pending_.append(bytes, sent);
  socket.update_events();  // the rest goes when the socket is writable (nothing, once it is closing)
}

void SendBatch::send_all() {
  sending_.swap(entries_);
  sending_bytes_.swap(bytes_);
  const unsigned sockets = sockets_;
  sockets_ = 0;
  for (const Entry& entry : sending_) {
    if (entry.socket != nullptr) entry.socket->queued_ = false;
  }
  results_.assign(sending_.size(), kUnanswered);
  if (sockets > 1 && make_ring()) {
    send_with_io_uring();
  } else {
    send_one_by_one();
  }
  // Every socket keeps its remainder before any handler hears of its own: a handler may write to
  // another socket of the batch, or close it (a closed one ignores its result; its memory lives
  // until the next poll).
  outcomes_.resize(sending_.size());
  for (std::size_t i = 0; i < sending_.size(); ++i) {
    const Entry& entry = sending_[i];
    if (entry.socket == nullptr) continue;
    const int result = results_[i];
    const std::size_t taken = result > 0 ? static_cast<std::size_t>(result) : 0;
    outcomes_[i] = entry.socket->keep_batch_remainder(
        {reinterpret_cast<const std::uint8_t*>(sending_bytes_.data()) + entry.offset + taken,
         entry.size - taken},
        error_of(result));
  }
  for (std::size_t i = 0; i < sending_.size(); ++i) {
    if (sending_[i].socket != nullptr)
      sending_[i].socket->report_batch_result(outcomes_[i], error_of(results_[i]));
  }
  sending_.clear();
  sending_bytes_.clear();
}

void SendBatch::send_one_by_one() {
  for (std::size_t i = 0; i < sending_.size(); ++i) {
    const Entry& entry = sending_[i];
    if (entry.socket != nullptr)
      results_[i] = send_plain(entry.socket->fd_, sending_bytes_.data() + entry.offset, entry.size);
  }
}

void SendBatch::send_with_io_uring() {
  submitted_.clear();
  for (std::size_t i = 0; i < sending_.size(); ++i) {
    const Entry& entry = sending_[i];
    if (entry.socket == nullptr) continue;
    io_uring_sqe* sqe = io_uring_get_sqe(&io_uring_);  // the ring holds kMaxSockets, as many as can queue
    io_uring_prep_send(sqe, entry.socket->fd_, sending_bytes_.data() + entry.offset, entry.size, kSendFlags);
    io_uring_sqe_set_data64(sqe, i);
    submitted_.push_back(i);
  }
  if (!reap(static_cast<unsigned>(submitted_.size()))) give_up_ring();
}

void SendBatch::give_up_ring() {
  // The kernel took the first sends in order and left the rest, which are made here. One it took
  // and did not answer may or may not have been made, so its socket fails rather than send twice.
  // None reads the batch's bytes once io_uring_enter returned: a MSG_DONTWAIT send is made inside
  // the call that submits it, never handed to a kernel worker.
  const std::size_t left = io_uring_sq_ready(&io_uring_);
  for (std::size_t k = 0; k < submitted_.size(); ++k) {
    const std::size_t i = submitted_[k];
    if (results_[i] != kUnanswered) continue;
    const Entry& entry = sending_[i];
    results_[i] = k + left >= submitted_.size()
                      ? send_plain(entry.socket->fd_, sending_bytes_.data() + entry.offset, entry.size)
                      : -EIO;
  }
  io_uring_queue_exit(&io_uring_);
  ring_ = Ring::refused;
}

bool SendBatch::reap(unsigned submitted) {
  unsigned answered = 0;
  int failed_enters = 0;
  while (answered < submitted) {
    // Submits what the ring holds and waits for an answer; MSG_DONTWAIT sends answer at once.
    const int entered = io_uring_submit_and_wait(&io_uring_, 1);
    answered += take_answers();  // even after a failed call: answers posted before it stand
    if (entered >= 0 || answered == submitted) continue;
    const bool transient = entered == -EINTR || entered == -EAGAIN || entered == -EBUSY;
    if (!transient || ++failed_enters == kMaxFailedEnters) return false;
  }
  return true;
}

unsigned SendBatch::take_answers() {
  io_uring_cqe* cqe = nullptr;
  unsigned head = 0;
  unsigned ready = 0;
  io_uring_for_each_cqe(&io_uring_, head, cqe) {
    results_[io_uring_cqe_get_data64(cqe)] = cqe->res;
    ++ready;
  }
  io_uring_cq_advance(&io_uring_, ready);
  return ready;
}

}  // namespace sluice::net
