#include "metrics/metrics_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/log.h"
#include "metrics/http_request.h"
#include "net/peer_connection.h"
#include "net/poll_socket.h"

namespace sluice::metrics {
namespace {

constexpr std::size_t kReadChunk = 4096;
constexpr std::chrono::milliseconds kSweep(250);

std::string http_response(std::string_view status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers = "") {
  std::string response = "HTTP/1.1 ";
  response += status;
  response += "\r\nContent-Type: ";
  response += content_type;
  response += "\r\nContent-Length: " + std::to_string(body.size());
  response += "\r\nConnection: close\r\n";
  response += extra_headers;
  response += "\r\n";
  response += body;
  return response;
}

std::string error_response(std::string_view status, std::string_view extra_headers = "") {
  return http_response(status, "text/plain; charset=utf-8", std::string(status) + "\n", extra_headers);
}

// Refusals go to fresh sockets whose send buffer is empty: one non-blocking send takes the short answer.
void refuse(int fd, const std::string& response) {
  (void)::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(fd);
}

}  // namespace

// One scraper: reads the request head, answers once, closes.
class MetricsServer::Connection final : public net::PeerConnection {
 public:
  Connection(MetricsServer& server, std::uint64_t id)
      : PeerConnection(server.loop_, "metrics", id,
                       [&server](PeerConnection& peer) { server.retire(static_cast<Connection&>(peer)); }),
        server_(server),
        deadline_ms_(uv_now(server.loop_) + server.settings_.request_timeout_ms) {}

  void take_answer(const std::string& body, Format format) {
    if (closed_ || phase_ != Phase::awaiting_answer) return;
    send(http_response("200 OK", content_type(format), body));
  }

  // Past its deadline: still sending its request (408), or not reading the answer (closed).
  void check_deadline(std::uint64_t now_ms) {
    if (now_ms < deadline_ms_) return;
    if (phase_ == Phase::reading) return send(error_response("408 Request Timeout"));
    close(phase_ == Phase::writing ? "the scraper did not read its answer in time" : "no answer in time");
  }

  std::list<std::unique_ptr<Connection>>::iterator position;

 private:
  enum class Phase { reading, awaiting_answer, writing };

  void on_readable() override {
    std::array<char, kReadChunk> buffer;
    const ssize_t n = socket_->read(buffer.data(), buffer.size());
    if (n == -EAGAIN) return;
    if (n <= 0) return close(n == 0 ? "peer closed before its request was complete" : "read error");
    received_.append(buffer.data(), static_cast<std::size_t>(n));
    // Each byte is looked at once, however the request is split: a line end may straddle reads.
    const std::size_t from = scanned_ > 2 ? scanned_ - 2 : 0;
    scanned_ = received_.size();
    if (find_head_end(received_, from) == std::string::npos &&
        received_.size() <= server_.settings_.max_head_bytes)
      return;
    const HttpRequest request = parse_http_request(received_, server_.settings_.max_head_bytes);
    switch (request.status) {
      case HttpRequest::Status::incomplete:
        return;
      case HttpRequest::Status::too_large:
        return send(error_response("431 Request Header Fields Too Large"));
      case HttpRequest::Status::bad:
        return send(error_response("400 Bad Request"));
      case HttpRequest::Status::complete:
        return answer(request);
    }
  }

  void on_drained() override {
    if (phase_ == Phase::writing) close("answered");
  }

  void on_socket_error(int uv_status) override {
    close("socket error: " + net::PollSocket::describe_error(uv_status));
  }

  void answer(const HttpRequest& request) {
    std::string().swap(received_);
    if (request.path != "/metrics") return send(error_response("404 Not Found"));
    if (request.method != "GET") return send(error_response("405 Method Not Allowed", "Allow: GET\r\n"));
    phase_ = Phase::awaiting_answer;
    deadline_ms_ = uv_now(server_.loop_) + server_.settings_.response_timeout_ms;
    socket_->set_reading(false);
    const Format format = format_for_accept(request.accept);
    server_.scrape_(format, [lifeline = std::weak_ptr<MetricsServer*>(server_.lifeline_), id = id_,
                             format](const std::string& body) {
      if (const auto server = lifeline.lock()) (*server)->deliver(id, body, format);
    });
  }

  // The one answer: the connection closes once the kernel has taken it, or at the deadline.
  void send(const std::string& response) {
    phase_ = Phase::writing;
    deadline_ms_ = uv_now(server_.loop_) + server_.settings_.response_timeout_ms;
    socket_->set_reading(false);
    if (!socket_->write(response)) return close("write failed: peer gone");
    if (!socket_->has_pending_output()) close("answered");
  }

  MetricsServer& server_;
  std::uint64_t deadline_ms_;
  Phase phase_ = Phase::reading;
  std::string received_;
  std::size_t scanned_ = 0;  // bytes of received_ already searched for the head's end
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::open(uv_loop_t* loop, Settings settings,
                                                           Scrape scrape) {
  std::unique_ptr<MetricsServer> server(new MetricsServer(loop, std::move(settings), std::move(scrape)));
  auto on_accept = [raw = server.get()](int fd, daemon::Transport) { raw->accept(fd); };
  const std::string& listen = server->settings_.listen;
  // A path names a Unix socket: the group may scrape it (it shows database and user names).
  auto listener = listen.find('/') != std::string::npos
                      ? daemon::Listener::open_unix(loop, listen, 0660, std::move(on_accept))
                      : daemon::Listener::open_tcp(loop, listen, std::move(on_accept));
  if (!listener) return fail("metrics.listen: " + listener.error());
  server->listener_ = std::move(*listener);
  log::info("metrics endpoint listening on ", server->listener_->name(), " (GET /metrics)");
  return server;
}

MetricsServer::MetricsServer(uv_loop_t* loop, Settings settings, Scrape scrape)
    : loop_(loop),
      settings_(std::move(settings)),
      scrape_(std::move(scrape)),
      deleter_(loop),
      sweep_(loop, [this] { close_overdue_connections(); }),
      lifeline_(std::make_shared<MetricsServer*>(this)) {
  sweep_.unref();
  sweep_.start(kSweep, kSweep);
}

MetricsServer::~MetricsServer() {
  connections_.clear();
  listener_.reset();
}

void MetricsServer::accept(int fd) {
  if (connections_.size() >= settings_.max_connections) {
    log::warning("metrics endpoint: refused a scraper: ", connections_.size(), " connections open");
    return refuse(fd, error_response("503 Service Unavailable"));
  }
  auto& connection = connections_.emplace_back(std::make_unique<Connection>(*this, next_connection_id_++));
  connection->position = std::prev(connections_.end());
  if (!connection->start(fd)) connection->close("cannot watch the socket");
}

void MetricsServer::close_overdue_connections() {
  const std::uint64_t now = uv_now(loop_);
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = **it++;  // a close retires it from the list
    connection.check_deadline(now);
  }
}

void MetricsServer::deliver(std::uint64_t connection_id, const std::string& body, Format format) {
  for (auto& connection : connections_) {
    if (connection->id() == connection_id) return connection->take_answer(body, format);
  }
}

void MetricsServer::finish(std::chrono::milliseconds grace, std::function<void()> done) {
  if (wind_down_.started()) return;
  listener_->close();
  wind_down_.start(loop_, grace, std::move(done));
  if (connections_.empty()) wind_down_.finish();
}

void MetricsServer::retire(Connection& connection) {
  std::unique_ptr<Connection> owned = std::move(*connection.position);
  connections_.erase(connection.position);
  deleter_.defer(std::move(owned));
  if (connections_.empty()) wind_down_.finish();
}

}  // namespace sluice::metrics
