// A non-blocking socket watched by its loop's SocketReactor. Reads are pulled by the owner into
// its own (usually shared) buffer, so an idle connection holds no read buffer;
// writes go straight to the kernel and only an unsent remainder is kept, or, on a socket that
// batches its sends, go with the loop turn's others (net/send_batch.h).
// A client socket may switch to TLS (start_tls), a server socket carry an established session
// (use_tls): read and write then carry plaintext.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "net/socket_reactor.h"
#include "net/tls_channel.h"

namespace sluice::net {

class PollSocket final : SocketReactor::Watcher {
  friend class SendBatch;

 public:
  class Handler {
   public:
    virtual void on_readable() = 0;
    // All that was written has reached the kernel (a remainder, or a batched send): a paused peer
    // may read again.
    virtual void on_drained() = 0;
    // A poll error (the peer reset the connection) or a failed flush; describe_error() words it.
    virtual void on_socket_error(int uv_status) = 0;
    // A batched write (batch_sends) the kernel took only in part: the peer reads slower than it is
    // written to; on_drained follows once the rest is in the kernel.
    virtual void on_backed_up() {}

   protected:
    ~Handler() = default;
  };

  struct Closer {
    void operator()(PollSocket* socket) const { socket->close(); }
  };
  using Ptr = std::unique_ptr<PollSocket, Closer>;

  // Starts watching `fd` (already non-blocking). With `owns_fd` the fd is
  // closed with the socket; otherwise its owner (libpq) closes it.
  static Ptr open(uv_loop_t* loop, int fd, bool owns_fd, Handler* handler);
  // Closes once the unsent remainder has reached the kernel (or the peer is
  // gone), so a last reply or error is not cut off.
  static void close_when_flushed(Ptr socket);
  // A socket's EPOLLERR is reported as UV_EBADF, as libuv does; say what it means instead.
  static std::string describe_error(int uv_status);

  PollSocket(const PollSocket&) = delete;
  PollSocket& operator=(const PollSocket&) = delete;

  // >0 bytes read, 0 at end of stream, -EAGAIN when nothing is there, -errno (-EPROTO: the TLS
  // handshake or stream failed, tls()->failure() says why). With TLS, what OpenSSL holds (records
  // read ahead, or what a small buffer left) is handed over by on_events, also after a pause in
  // reading.
  ssize_t read(void* buffer, std::size_t size);
  // Sends now; keeps what the kernel did not take and sends it when writable.
  // False on a hard error (the peer is gone). With TLS, bytes written before the handshake is
  // done are dropped: the client could not read them.
  bool write(std::span<const std::uint8_t> bytes);
  bool write(const std::string& bytes) {
    return write({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  }
  // Written and not yet in the kernel: queued in the turn's batch, or a remainder it refused.
  [[nodiscard]] bool has_pending_output() const { return queued_ || !pending_.empty(); }
  // The kernel refused a part: the peer reads slower than it is written to.
  [[nodiscard]] bool backed_up() const { return !pending_.empty(); }
  [[nodiscard]] std::size_t pending_output() const { return pending_.size(); }
  void set_reading(bool reading);
  [[nodiscard]] bool reading() const { return reading_; }
  [[nodiscard]] int fd() const { return fd_; }
  void set_handler(Handler* handler) { handler_ = handler; }
  // Small writes go out with the loop turn's other batched sends (net/send_batch.h).
  void batch_sends() { batched_ = true; }
  // Sends what waits in the turn's batch now; what the kernel does not take becomes pending output.
  void send_queued_now() {
    if (queued_) reactor_.send_batch().send_now(*this);
  }

  // Server-side TLS from now on; the handshake runs inside read(). False when OpenSSL cannot
  // start one, or output is still pending (the 'S' that answers an SSLRequest goes in plain text).
  bool start_tls(std::shared_ptr<const config::TlsContext> context, TlsChannel::Start start);
  // A server connection's TLS session, handshake done (TlsChannel::borrow: libpq's;
  // TlsChannel::connect: SCRAM pass-through's own). False when the socket is closing or output is
  // already pending.
  bool use_tls(std::unique_ptr<TlsChannel> established);
  [[nodiscard]] const TlsChannel* tls() const { return tls_.get(); }
  // The next byte the peer sent, left in the kernel: the byte (0-255), -EAGAIN when nothing is
  // there, -ENODATA at end of stream, -errno.
  [[nodiscard]] int peek_byte() const;

 private:
  PollSocket(uv_loop_t* loop, int fd, bool owns_fd, Handler* handler)
      : reactor_(SocketReactor::of(loop)), fd_(fd), handler_(handler), owns_fd_(owns_fd) {}
  ~PollSocket() override = default;
  // Stops watching at once (an fd it does not own may be closed right after) and closes an owned
  // fd; the memory goes before the next poll (an event for it already read is skipped).
  void close();
  void update_events();
  void flush();
  ssize_t read_tls(void* buffer, std::size_t size);
  bool write_tls(std::span<const std::uint8_t> bytes);
  // Sends pending_ through TLS; false on a hard error.
  bool flush_tls();
  void on_events(std::uint32_t events) override;
  // What the batch's send of this socket's queued bytes came to, in two steps, so that no
  // callback runs before every socket of the batch holds its remainder (a callback may write to
  // another): keep_batch_remainder takes the kernel's answer (`unsent`: what it did not take;
  // `error` > 0 on a hard error), report_batch_result tells the handler once all have.
  BatchResult keep_batch_remainder(std::span<const std::uint8_t> unsent, int error);
  void report_batch_result(BatchResult result, int error);
  void on_reactor_closing() override {
    if (close_when_flushed_) close();
  }

  // Together, right after the reactor's links: what every event, read and write reads (the flags,
  // the handler and pending_'s length, its second word).
  SocketReactor& reactor_;
  int fd_;
  std::uint32_t watched_events_ = 0;  // what the reactor watches: EPOLLIN, EPOLLOUT
  bool reading_ = true;
  bool watching_writable_ = false;
  bool closing_ = false;
  bool encrypted_ = false;  // tls_ is set (asked here, not of tls_ on a line of its own)
  bool batched_ = false;
  bool queued_ = false;  // bytes of it wait in the reactor's SendBatch (pending_ is then empty)
  Handler* handler_;
  std::string pending_;
  std::size_t pending_offset_ = 0;
  std::unique_ptr<TlsChannel> tls_;
  bool owns_fd_;
  bool close_when_flushed_ = false;
  // A writable event stands in for a readable one: OpenSSL must send before it can read on, or
  // reading resumed while OpenSSL held bytes the kernel will not announce. The next read resets it.
  bool tls_read_wants_writable_ = false;
};

}  // namespace sluice::net
