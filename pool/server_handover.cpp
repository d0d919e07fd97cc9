// Live upgrade, a server connection's part (README "Live upgrade"): a session-mode client moves to
// the new process with its server, a logged-in backend between transactions, so that its session
// (settings, prepared statements, temporary tables) goes on there. Only the socket and what
// identifies the backend travel; neither process sends the backend anything on the way.
#include <fcntl.h>
#include <unistd.h>

#include "common/log.h"
#include "pool/pool.h"
#include "pool/server_connection.h"

namespace sluice::pool {

// A TLS session — libpq's, or the one a SCRAM pass-through login made — cannot go: its keys stay
// in this process's OpenSSL, and the new process would read records as protocol messages.
bool ServerConnection::can_travel() const { return socket_ && cancel_key_ && socket_->tls() == nullptr; }

bool ServerConnection::at_rest() const {
  return state_ == ServerState::active && idle_clean() && scanner_.at_boundary() && !has_pending_output() &&
         !cancel_pending() && !capture_;
}

MovedServer ServerConnection::moved() const {
  return {.backend_pid = static_cast<std::uint32_t>(backend_pid_),
          .cancel_secret = cancel_key_ ? cancel_key_->secret : 0,
          .parameters = parameters_,
          .login_user = baseline_ ? baseline_->session_authorization : std::string(),
          .statement_generation = statements_.generation(),
          .holds_backend_state = holds_backend_state_,
          .carries_client_settings = carries_client_settings_,
          .session_changed = session_changed_,
          .functions_changed = functions_changed_,
          .library_loaded = library_loaded_};
}

int ServerConnection::release_for_handover() {
  if (!socket_) return -1;
  const int socket = socket_->fd();
  const int copy = ::fcntl(socket, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return -1;
  if (conn_ == nullptr) {
    socket_.reset();  // SCRAM pass-through's socket is its own: closed, without a goodbye
    return copy;
  }
  // libpq's PQfinish says goodbye on the descriptor it holds: pointed at /dev/null first, so that the
  // backend, whose session moves, never hears it. Polling stops while it is still the socket.
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) {
    ::close(copy);
    return -1;
  }
  socket_.reset();
  const bool replaced = ::dup3(null, socket, O_CLOEXEC) == socket;
  ::close(null);
  if (!replaced) {
    ::close(copy);
    watch_socket(socket, /*owns_fd=*/false);
    return -1;
  }
  PQfinish(conn_);
  conn_ = nullptr;
  return copy;
}

bool ServerConnection::adopt(int fd, const MovedServer& moved) {
  backend_pid_ = static_cast<int>(moved.backend_pid);
  parameters_ = moved.parameters;
  CancelKey key{.process_id = moved.backend_pid, .secret = moved.cancel_secret};
  key.address_length = sizeof key.address;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&key.address), &key.address_length) == 0)
    cancel_key_ = key;
  baseline_.emplace(moved.login_user, pool_.key().settings);
  transaction_status_ = 'I';
  // The backend's statements are the old process's, under its names: this cache starts empty, past
  // them; the client's statements are prepared again as it uses them. Its release still resets them.
  if (tracks_statements_) statements_.start_generation_after(moved.statement_generation);
  holds_backend_state_ = moved.holds_backend_state;
  carries_client_settings_ = moved.carries_client_settings;
  session_changed_ = moved.session_changed;
  functions_changed_ = moved.functions_changed;
  library_loaded_ = moved.library_loaded;
  return watch_socket(fd, /*owns_fd=*/true);
}

int Pool::hand_over_server(ServerConnection& server, std::uint64_t client_id) {
  const int fd = server.release_for_handover();
  if (fd < 0) return -1;
  context_.stats->scope_ended();
  server.detach();
  log::debug("pool ", name_, ": server ", server.id(), " (backend pid ", server.backend_pid(),
             ") handed over with client ", client_id);
  server.close_connection();  // nothing of the connection is left here but its bookkeeping
  forget_server(server, -1);  // its backend lives on, counted by the new process
  return fd;
}

Scope Pool::adopt_server(int fd, const MovedServer& moved, std::uint64_t client_id) {
  for (const CountSeat* seat : {&seats_.database, &seats_.user}) seat->count->take(*seat->member);
  ++budget_->servers;
  auto owned =
      std::make_unique<ServerConnection>(*this, context_.server_ids->fetch_add(1, std::memory_order_relaxed));
  ServerConnection& server = *owned;
  active_.push_back(std::move(owned));
  server.position_ = std::prev(active_.end());
  server.state_ = ServerState::active;
  server.target_generation_ = target_generation_;
  if (!server.adopt(fd, moved)) {
    close_server(server, "its socket cannot be watched");
    return {};
  }
  log::debug("pool ", name_, ": server ", server.id(), " (backend pid ", moved.backend_pid,
             ") came with client ", client_id);
  context_.stats->scope_started();
  learn_parameters(server);
  return {*this, server, client_id};
}

}  // namespace sluice::pool
