// A non-blocking socket driven by uv_poll. Reads are pulled by the owner into
// its own (usually shared) buffer, so an idle connection holds no read buffer;
// writes go straight to the kernel and only an unsent remainder is kept.
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

#include "net/tls_channel.h"

namespace sluice::net {

// libuv's handle, alone in a standard-layout struct: a pointer to it is a pointer to the struct, and
// so (a downcast) to the socket it starts.
struct PollHandle {
  uv_poll_t poll_{};
};

// An event reads the handle's callbacks and pevents (libuv 1.44: bytes 96-152) and the socket's
// flags and handler right after the handle: two cache lines wherever malloc puts the socket.
class PollSocket : PollHandle {
 public:
  class Handler {
   public:
    virtual void on_readable() = 0;
    // The write remainder has reached the kernel: a paused peer may read again.
    virtual void on_drained() = 0;
    // A poll error (the peer reset the connection) or a failed flush; describe_error() words it.
    virtual void on_socket_error(int uv_status) = 0;

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
  // libuv reports a socket's POLLERR as UV_EBADF; say what it means instead.
  static std::string describe_error(int uv_status);

  PollSocket(const PollSocket&) = delete;
  PollSocket& operator=(const PollSocket&) = delete;

  // >0 bytes read, 0 at end of stream, -EAGAIN when nothing is there, -errno (-EPROTO: the TLS
  // handshake or stream failed, tls()->failure() says why). With TLS, what OpenSSL holds (records
  // read ahead, or what a small buffer left) is handed over by on_poll, also after a pause in
  // reading.
  ssize_t read(void* buffer, std::size_t size);
  // Sends now; keeps what the kernel did not take and sends it when writable.
  // False on a hard error (the peer is gone). With TLS, bytes written before the handshake is
  // done are dropped: the client could not read them.
  bool write(std::span<const std::uint8_t> bytes);
  bool write(const std::string& bytes) {
    return write({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
  }
  [[nodiscard]] bool has_pending_output() const { return !pending_.empty(); }
  [[nodiscard]] std::size_t pending_output() const { return pending_.size(); }
  void set_reading(bool reading);
  [[nodiscard]] bool reading() const { return reading_; }
  [[nodiscard]] int fd() const { return fd_; }
  void set_handler(Handler* handler) { handler_ = handler; }

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
  PollSocket(int fd, bool owns_fd, Handler* handler) : fd_(fd), handler_(handler), owns_fd_(owns_fd) {}
  ~PollSocket() = default;
  // Stops polling at once (the fd may be closed right after); memory and an
  // owned fd are released in the close callback, as libuv requires.
  void close();
  void update_events();
  void flush();
  ssize_t read_tls(void* buffer, std::size_t size);
  bool write_tls(std::span<const std::uint8_t> bytes);
  // Sends pending_ through TLS; false on a hard error.
  bool flush_tls();
  // The socket a handle belongs to, found from the handle's address (handle->data would be one more
  // line to read per event).
  static PollSocket* of(uv_poll_t* handle);
  static void on_poll(uv_poll_t* handle, int status, int events);

  // Together, what every event, read and write reads besides the handle: the flags, the handler and
  // pending_'s length (its second word), 32 bytes right after the handle.
  int fd_;
  bool reading_ = true;
  bool watching_writable_ = false;
  bool closing_ = false;
  bool encrypted_ = false;  // tls_ is set (asked here, not of tls_ on a line of its own)
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
