// The /metrics endpoint: a small HTTP/1.1 server on the daemon's loop
// (`metrics.listen`, TCP "host:port" or a Unix socket path). Read-only: GET
// /metrics, one request per connection, `Connection: close`. A scraper cannot
// hurt the pooler: the request head is bounded (431 past it), so are the
// connections (503 past them) and the time a connection may take to send its
// request (408) and to read the answer (then it is closed), and nothing it does
// blocks the loop.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "common/result.h"
#include "daemon/listener.h"
#include "metrics/exposition.h"
#include "net/deferred_deleter.h"
#include "net/loop_timer.h"
#include "net/wind_down.h"

namespace sluice::metrics {

class MetricsServer {
 public:
  // Takes the body of an answer, on the loop, now or on a later turn.
  using Respond = std::function<void(std::string body)>;
  // Gathers a scrape in `format` and calls `respond` once.
  using Scrape = std::function<void(Format format, Respond respond)>;

  struct Settings {
    std::string listen;                         // metrics.listen: "host:port", or a path with a '/'
    std::size_t max_head_bytes = 8192;          // request line and headers
    std::size_t max_connections = 16;           // more are answered 503 and closed
    std::uint64_t request_timeout_ms = 5000;    // to send the whole request head
    std::uint64_t response_timeout_ms = 10000;  // to take the whole answer
  };

  static Result<std::unique_ptr<MetricsServer>> open(uv_loop_t* loop, Settings settings, Scrape scrape);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  [[nodiscard]] const std::string& name() const { return listener_->name(); }
  // The listening socket, for a live upgrade to hand over.
  [[nodiscard]] daemon::Listener& listener() { return *listener_; }
  [[nodiscard]] std::size_t connection_count() const { return connections_.size(); }
  // Before the daemon exits: stops accepting (a handed-over socket stays the new process's) and
  // calls `done` once every scrape already accepted is answered, or after `grace`. `done` runs
  // inside this server's callbacks: it must not destroy the server there.
  void finish(std::chrono::milliseconds grace, std::function<void()> done);

 private:
  class Connection;

  MetricsServer(uv_loop_t* loop, Settings settings, Scrape scrape);
  void accept(int fd);
  void deliver(std::uint64_t connection_id, const std::string& body, Format format);
  void retire(Connection& connection);
  void close_overdue_connections();

  uv_loop_t* loop_;
  Settings settings_;
  Scrape scrape_;
  std::uint64_t next_connection_id_ = 1;
  net::DeferredDeleter deleter_;
  std::unique_ptr<daemon::Listener> listener_;
  std::list<std::unique_ptr<Connection>> connections_;
  net::LoopTimer sweep_;
  net::WindDown wind_down_;  // finish()
  // Answers still owed hold it weakly: it expires with this server.
  std::shared_ptr<MetricsServer*> lifeline_;
};

}  // namespace sluice::metrics
