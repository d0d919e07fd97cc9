// A closed server's backend, until PostgreSQL has let it go. After the Terminate message a backend
// still counts against PostgreSQL's max_connections, and shows in pg_stat_activity, until its
// process has left both; it closes its socket after that. Watching a duplicate of the socket for
// that end tells the pool when the places of max_db_connections and max_user_connections may move,
// so that the server opened in a closed one's place never stands beside it in PostgreSQL's count.
#pragma once

#include <uv.h>

#include <chrono>
#include <string>

#include "net/poll_socket.h"

namespace sluice::pool {

class DepartingBackend final : net::PollSocket::Handler {
 public:
  using Clock = std::chrono::steady_clock;

  class Owner {
   public:
    // Called once, when the backend has closed its end, sent anything more, or the socket failed;
    // `departing` may be freed on the next loop turn.
    virtual void backend_departed(DepartingBackend& departing) = 0;

   protected:
    ~Owner() = default;
  };

  // Takes `fd`, a duplicate of the server's socket made before its connection was closed (so the
  // goodbye went first): our end of the stream is shut down at once, as closing the connection
  // would have done, and only the backend's end is awaited. `server` names it in the log.
  DepartingBackend(uv_loop_t* loop, int fd, std::string server, Owner& owner);
  DepartingBackend(const DepartingBackend&) = delete;
  DepartingBackend& operator=(const DepartingBackend&) = delete;
  ~DepartingBackend() = default;

  // False when the socket could not be watched (epoll refused it; the fd is closed): nothing will
  // tell the backend's end.
  [[nodiscard]] bool watching() const { return socket_ != nullptr; }
  [[nodiscard]] const std::string& server() const { return server_; }
  [[nodiscard]] Clock::time_point since() const { return since_; }

 private:
  // net::PollSocket::Handler
  void on_readable() override;
  void on_drained() override {}
  void on_socket_error(int /*uv_status*/) override { departed(); }
  void departed();

  Owner& owner_;
  std::string server_;
  Clock::time_point since_ = Clock::now();
  net::PollSocket::Ptr socket_;
};

}  // namespace sluice::pool
