// A non-blocking socket driven by uv_poll. Reads are pulled by the owner into
// its own (usually shared) buffer, so an idle connection holds no read buffer;
// writes go straight to the kernel and only an unsent remainder is kept.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace sluice::net {

class PollSocket {
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

  // >0 bytes read, 0 at end of stream, -EAGAIN when nothing is there, -errno.
  ssize_t read(void* buffer, std::size_t size) const;
  // Sends now; keeps what the kernel did not take and sends it when writable.
  // False on a hard error (the peer is gone).
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

 private:
  PollSocket(int fd, bool owns_fd, Handler* handler) : fd_(fd), owns_fd_(owns_fd), handler_(handler) {}
  ~PollSocket() = default;
  // Stops polling at once (the fd may be closed right after); memory and an
  // owned fd are released in the close callback, as libuv requires.
  void close();
  void update_events();
  void flush();
  static void on_poll(uv_poll_t* handle, int status, int events);

  uv_poll_t poll_{};
  int fd_;
  bool owns_fd_;
  Handler* handler_;
  bool reading_ = true;
  bool watching_writable_ = false;
  bool closing_ = false;
  bool close_when_flushed_ = false;
  std::string pending_;
  std::size_t pending_offset_ = 0;
};

}  // namespace sluice::net
