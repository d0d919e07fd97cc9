#include "daemon/control_server.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "daemon/upgrade/inherited_sockets.h"
#include "net/peer_connection.h"
#include "net/poll_socket.h"

namespace sluice::daemon {
namespace {

using Json = nlohmann::json;

// Past this much unsent output a connection stops reading and answering until
// the peer catches up, so a peer that never reads holds at most one answer.
constexpr std::size_t kOutputHighWater = std::size_t{64} * 1024;
// Reads per wake-up: a chatty peer cannot keep the loop to itself.
constexpr int kMaxReadsPerWakeup = 8;
constexpr std::uint64_t kIdleSweepMs = 1000;
constexpr std::size_t kReadChunk = std::size_t{16} * 1024;

std::string errno_text(int error) { return std::strerror(error); }

Json error_json(std::string message) { return Json{{"error", std::move(message)}}; }

// One line on the wire. The replace handler keeps a stray invalid UTF-8 byte
// (echoed from a bad request) from throwing inside a loop callback.
std::string wire_line(const Json& response) {
  return response.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// Refusals go to fresh sockets whose send buffer is empty: one non-blocking
// send either takes the short line or the peer is gone anyway.
void refuse(int fd, const std::string& message) {
  const std::string line = wire_line(error_json(message));
  (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(fd);
}

Result<gid_t> resolve_group(const std::string& name) {
  std::vector<char> buffer(16384);
  for (;;) {
    group entry{};
    group* found = nullptr;
    const int rc = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < (1U << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc == 0 && found != nullptr) return found->gr_gid;
    break;
  }
  gid_t numeric = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), numeric);
  if (!name.empty() && ec == std::errc() && end == name.data() + name.size()) return numeric;
  return fail("control.group: unknown group '" + name + "'");
}

// A socket file nobody listens on is stale and may be replaced; anything else
// at the path is not ours to delete.
std::optional<std::string> check_existing_path(const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return "cannot inspect " + path + ": " + errno_text(errno);
  }
  if (!S_ISSOCK(status.st_mode)) return path + " exists and is not a socket; refusing to replace it";
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return "socket path too long: " + path;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text(errno);
  const bool live =
      ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 || errno == EAGAIN;
  ::close(fd);
  if (live) return "another process is listening on " + path + " (is sluiced already running?)";
  return std::nullopt;
}

// The groups of `uid` from the user database: a lookup that may block, only
// for kernels without SO_PEERGROUPS (before 4.13).
std::vector<gid_t> user_groups(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) return {};
  int count = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  if (::getgrouplist(found->pw_name, found->pw_gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<std::size_t>(count));
    if (::getgrouplist(found->pw_name, found->pw_gid, groups.data(), &count) < 0) return {};
  }
  groups.resize(static_cast<std::size_t>(count));
  return groups;
}

// The peer's supplementary groups as the kernel saw them at connect: what it
// also checked the socket file's mode against.
std::vector<gid_t> peer_groups(int fd, uid_t uid) {
#ifdef SO_PEERGROUPS
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
      groups.resize(size / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) break;
    groups.resize(size / sizeof(gid_t) + 1);
  }
  if (errno != ENOPROTOOPT) return {};
#endif
  return user_groups(uid);
}

}  // namespace

// One peer. Reads go through a stack buffer; `inbox_` holds bytes only while a
// partial line (or lines held back by a slow reader) is pending.
class ControlServer::Connection final : public net::PeerConnection {
 public:
  Connection(ControlServer& server, std::uint64_t id)
      : PeerConnection(server.loop_, "control", id,
                       [&server](PeerConnection& peer) { server.retire(static_cast<Connection&>(peer)); }),
        server_(server),
        last_activity_ms_(uv_now(server.loop_)) {}

  // The answer to the request in hand (now or on a later turn); then the next request.
  void take_answer(const Json& response) {
    if (!awaiting_answer_ || closed_) return;
    awaiting_answer_ = false;
    send(response);
    if (closed_ || processing_) return;  // answered at once: process_input() goes on
    if (!eof_) socket_->set_reading(true);
    process_input();
  }

  // A peer that has had its answers and sent nothing more is done with this server.
  [[nodiscard]] bool idle_after_answer() const {
    return answered_ && !awaiting_answer_ && inbox_.empty() && !closed_;
  }
  void close_when_answered() {
    if (idle_after_answer()) close_after_flush("the daemon stops");
  }

  std::list<std::unique_ptr<Connection>>::iterator position;
  [[nodiscard]] std::uint64_t last_activity_ms() const { return last_activity_ms_; }

 private:
  void on_readable() override {
    last_activity_ms_ = uv_now(server_.loop_);
    std::array<char, kReadChunk> buffer;
    for (int i = 0; i < kMaxReadsPerWakeup && !closed_ && !eof_ && socket_->reading(); ++i) {
      const ssize_t n = socket_->read(buffer.data(), buffer.size());
      if (n == -EAGAIN) return;
      if (n < 0) return close("read error: " + errno_text(static_cast<int>(-n)));
      if (n == 0) {
        // The peer may have only shut down its writing side: answer what it sent.
        eof_ = true;
        socket_->set_reading(false);  // EOF stays readable: stop polling for it
      } else {
        inbox_.append(buffer.data(), static_cast<std::size_t>(n));
      }
      process_input();
    }
  }

  void on_drained() override {
    if (closing_after_flush_) return close(close_reason_);
    if (!eof_) socket_->set_reading(true);
    process_input();
  }

  void on_socket_error(int uv_status) override {
    close(std::string("socket error: ") + uv_strerror(uv_status));
  }

  [[nodiscard]] bool backed_up() const { return socket_->pending_output() >= kOutputHighWater; }

  // Answers every complete line in turn, unless the peer stops taking our
  // output or an answer is still to come (take_answer picks up from there).
  void process_input() {
    if (awaiting_answer_) return socket_->set_reading(false);
    processing_ = true;
    std::size_t start = 0;
    bool held_back = false;
    while (!closed_ && !closing_after_flush_ && !awaiting_answer_) {
      if (backed_up()) {
        held_back = true;
        break;
      }
      const auto newline = inbox_.find('\n', std::max(start, scanned_));
      if (newline == std::string::npos) break;
      const std::string_view line(inbox_.data() + start, newline - start);
      if (line.size() > server_.settings_.max_request_bytes) return too_long();
      answer(line);
      start = newline + 1;
    }
    processing_ = false;
    if (closed_ || closing_after_flush_) return;
    inbox_.erase(0, start);
    if (held_back || awaiting_answer_) {
      scanned_ = 0;
      return socket_->set_reading(false);  // on_drained() or take_answer() picks up from here
    }
    scanned_ = inbox_.size();
    if (inbox_.size() > server_.settings_.max_request_bytes) return too_long();
    if (eof_) {
      if (!inbox_.empty()) {  // a last line without its newline
        const std::string last = std::exchange(inbox_, {});
        processing_ = true;
        answer(last);
        processing_ = false;
        if (closed_ || awaiting_answer_) return;
      }
      return close_after_flush("peer closed its end");
    }
    if (inbox_.empty()) std::string().swap(inbox_);  // an idle connection keeps no buffer
    if (server_.wind_down_.pending()) close_when_answered();
  }

  void answer(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto request = parse_control_request(line);
    if (!request) return send(error_json(request.error()));
    awaiting_answer_ = true;
    const std::string command(command_name(request->command));
    ControlServer::Respond respond = [lifeline = std::weak_ptr(server_.lifeline_),
                                      id = id_](const Json& response) {
      if (const auto server = lifeline.lock()) (*server)->deliver(id, response);
    };
    try {
      server_.handler_(*request, std::move(respond));
    } catch (const std::exception& error) {
      log::error("control command ", command, " failed: ", error.what());
      take_answer(error_json(std::string("internal error: ") + error.what()));
    } catch (...) {
      log::error("control command ", command, " failed");
      take_answer(error_json("internal error"));
    }
  }

  void send(const Json& response) {
    answered_ = true;
    std::string line;
    try {
      line = wire_line(response);
    } catch (const std::exception& error) {  // e.g. out of memory for a huge answer
      line = wire_line(error_json(std::string("internal error: ") + error.what()));
    }
    if (!socket_->write(line)) close("write failed: peer gone");
  }

  void too_long() {
    send(error_json("request too long (limit " + std::to_string(server_.settings_.max_request_bytes) +
                    " bytes)"));
    std::string().swap(inbox_);
    close_after_flush("request too long");
  }

  void close_after_flush(std::string reason) {
    if (closed_) return;
    if (!socket_->has_pending_output()) return close(reason);
    closing_after_flush_ = true;
    close_reason_ = std::move(reason);
    socket_->set_reading(false);
  }

  ControlServer& server_;
  std::uint64_t last_activity_ms_;  // loop time of the last read
  std::string inbox_;
  std::size_t scanned_ = 0;  // inbox_ bytes already known to hold no newline
  bool eof_ = false;
  bool awaiting_answer_ = false;  // a request handed to the daemon, its answer still to come
  bool answered_ = false;         // at least one answer sent
  bool processing_ = false;       // inside process_input()
  bool closing_after_flush_ = false;
  std::string close_reason_;
};

Result<std::unique_ptr<ControlServer>> ControlServer::open(uv_loop_t* loop, Settings settings,
                                                           Handler handler) {
  std::optional<gid_t> group_id;
  if (settings.group) {
    auto resolved = resolve_group(*settings.group);
    if (!resolved) return fail(resolved.error());
    group_id = *resolved;
  }
  // A live upgrade hands over the socket the old process still listens on: it is ours already.
  const bool inherited =
      upgrade::has_inherited_socket(Listener::key_for(Transport::unix_socket, settings.path));
  if (auto problem = inherited ? std::nullopt : check_existing_path(settings.path)) {
    return fail("control socket: " + *problem);
  }
  std::unique_ptr<ControlServer> server(
      new ControlServer(loop, std::move(settings), std::move(handler), group_id));
  const unsigned mode = group_id ? 0660 : 0600;
  auto listener = Listener::open_unix(loop, server->settings_.path, mode,
                                      [raw = server.get()](int fd, Transport) { raw->accept(fd); });
  if (!listener) return fail("control socket: " + listener.error());
  server->listener_ = std::move(*listener);
  // Listening already, but still root's group: members get in once this succeeds.
  if (group_id && ::chown(server->settings_.path.c_str(), static_cast<uid_t>(-1), *group_id) != 0) {
    return fail("control socket: cannot chgrp " + server->settings_.path + " to " + *server->settings_.group +
                ": " + errno_text(errno));
  }
  log::info("control socket listening on ", server->settings_.path);
  return server;
}

ControlServer::ControlServer(uv_loop_t* loop, Settings settings, Handler handler,
                             std::optional<gid_t> group_id)
    : loop_(loop),
      settings_(std::move(settings)),
      handler_(std::move(handler)),
      group_id_(group_id),
      own_uid_(::geteuid()),
      deleter_(loop),
      idle_sweep_(loop, [this] { close_idle_connections(); }),
      lifeline_(std::make_shared<ControlServer*>(this)) {
  idle_sweep_.unref();
  const std::chrono::milliseconds every(std::min(kIdleSweepMs, settings_.idle_timeout_ms));
  idle_sweep_.start(every, every);
}

ControlServer::~ControlServer() {
  connections_.clear();
  listener_.reset();
}

void ControlServer::accept(int fd) {
  if (auto reason = refusal(fd)) {
    log::warning("control socket: refused a peer: ", *reason);
    return refuse(fd, "permission denied: " + *reason);
  }
  if (connections_.size() >= settings_.max_connections) {
    log::warning("control socket: refused a peer: ", connections_.size(), " connections open");
    return refuse(fd,
                  "too many control connections (limit " + std::to_string(settings_.max_connections) + ")");
  }
  auto& connection = connections_.emplace_back(std::make_unique<Connection>(*this, next_connection_id_++));
  connection->position = std::prev(connections_.end());
  if (!connection->start(fd)) connection->close("cannot watch the socket");
}

std::optional<std::string> ControlServer::refusal(int fd) const {
  ucred credentials{};
  socklen_t size = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0 || size != sizeof credentials) {
    return "cannot read the peer's credentials: " + errno_text(errno);
  }
  if (credentials.uid == 0 || credentials.uid == own_uid_) return std::nullopt;
  if (group_id_) {
    if (credentials.gid == *group_id_) return std::nullopt;
    const auto groups = peer_groups(fd, credentials.uid);
    if (std::find(groups.begin(), groups.end(), *group_id_) != groups.end()) return std::nullopt;
  }
  std::string reason = "uid " + std::to_string(credentials.uid) + " (pid " + std::to_string(credentials.pid) +
                       ") is neither root nor the daemon's user (uid " + std::to_string(own_uid_) + ")";
  if (settings_.group) reason += " nor in group '" + *settings_.group + "'";
  return reason;
}

void ControlServer::close_idle_connections() {
  const std::uint64_t now = uv_now(loop_);
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = **it++;  // close() retires it from the list
    if (now - connection.last_activity_ms() >= settings_.idle_timeout_ms) connection.close("idle timeout");
  }
}

void ControlServer::finish(std::chrono::milliseconds grace, std::function<void()> done) {
  if (wind_down_.started()) return;
  listener_->close();
  wind_down_.start(loop_, grace, std::move(done));
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = **it++;  // closing retires it from the list
    connection.close_when_answered();
  }
  if (connections_.empty()) wind_down_.finish();
}

void ControlServer::deliver(std::uint64_t connection_id, const nlohmann::json& response) {
  for (auto& connection : connections_) {
    if (connection->id() == connection_id) return connection->take_answer(response);
  }
}

void ControlServer::retire(Connection& connection) {
  std::unique_ptr<Connection> owned = std::move(*connection.position);
  connections_.erase(connection.position);
  deleter_.defer(std::move(owned));
  if (connections_.empty()) wind_down_.finish();
}

}  // namespace sluice::daemon
