// The control socket: a Unix socket on the daemon's loop speaking one JSON
// object per line each way (DESIGN.md §4). Peers are admitted by their
// SO_PEERCRED credentials; each request line is parsed and handed to the
// daemon's handler, whose JSON answer goes back as one line. A connection's
// requests are answered in order, one at a time.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/result.h"
#include "daemon/control_request.h"
#include "daemon/listener.h"
#include "net/deferred_deleter.h"
#include "net/loop_timer.h"
#include "net/wind_down.h"

namespace sluice::daemon {

class ControlServer {
 public:
  // Takes the answer to one request, on the loop, now or on a later turn; an
  // answer for a connection since closed (or a server since destroyed) is dropped.
  using Respond = std::function<void(nlohmann::json)>;
  // Runs on the loop, once per well-formed request, and calls `respond` once.
  // It must not destroy the ControlServer (stop the daemon on a later turn so
  // the answer is sent). An exception it throws is answered as
  // {"error": "internal error: ..."}.
  using Handler = std::function<void(const ControlRequest&, Respond)>;

  struct Settings {
    std::string path;                       // control.socket
    std::optional<std::string> group;       // control.group: mode 0660 and chgrp; else mode 0600
    std::size_t max_request_bytes = 65536;  // limits.control_request_max
    std::size_t max_connections = 64;       // more are answered with an error and closed
    // A peer silent this long is closed, so idle peers cannot hold every slot.
    std::uint64_t idle_timeout_ms = 60000;
  };

  // Binds the socket (a stale socket file is replaced; a live one, or a file
  // that is not a socket, is an error) and starts accepting on `loop`.
  static Result<std::unique_ptr<ControlServer>> open(uv_loop_t* loop, Settings settings, Handler handler);
  // Closes every connection and removes the socket file.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  [[nodiscard]] const std::string& path() const { return settings_.path; }
  [[nodiscard]] std::size_t connection_count() const { return connections_.size(); }
  // Before the daemon exits: stops accepting (a handed-over socket stays the new process's),
  // answers every request already received and the first request of every peer already
  // accepted, closes each connection once it is answered, and calls `done` when none is left
  // or after `grace`. A request accepted just before a stop or an upgrade still gets its
  // answer. `done` runs inside this server's callbacks: it must not destroy the server there.
  void finish(std::chrono::milliseconds grace, std::function<void()> done);
  // The listening socket, for a live upgrade to hand over.
  [[nodiscard]] Listener& listener() { return *listener_; }

 private:
  class Connection;

  ControlServer(uv_loop_t* loop, Settings settings, Handler handler, std::optional<gid_t> group_id);
  void accept(int fd);
  // Why the peer on `fd` may not use the socket; nullopt when it may.
  [[nodiscard]] std::optional<std::string> refusal(int fd) const;
  // An answer for the connection `connection_id`, if it is still open.
  void deliver(std::uint64_t connection_id, const nlohmann::json& response);
  // Drops a closed connection; its memory goes on a later loop turn.
  void retire(Connection& connection);
  // Closes connections silent for a minute (a sweep every second).
  void close_idle_connections();

  uv_loop_t* loop_;
  Settings settings_;
  Handler handler_;
  std::optional<gid_t> group_id_;
  uid_t own_uid_;
  std::uint64_t next_connection_id_ = 1;
  net::DeferredDeleter deleter_;
  std::unique_ptr<Listener> listener_;
  std::list<std::unique_ptr<Connection>> connections_;
  net::LoopTimer idle_sweep_;
  net::WindDown wind_down_;  // finish()
  // Answers still owed hold it weakly: it expires with this server.
  std::shared_ptr<ControlServer*> lifeline_;
};

}  // namespace sluice::daemon
