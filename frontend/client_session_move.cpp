// Live upgrade, one client's part (README "Live upgrade"): the old process hands a client over
// at rest, between transactions, with its socket and its whole session state; the new process
// goes on with it as if nothing happened. A client that cannot move is drained as before.
#include <fcntl.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/worker.h"
#include "frontend/client_session.h"
#include "protocol/sqlstate.h"

namespace sluice::frontend {

// TLS state lives in this process's OpenSSL; session mode and a pinned client keep a server
// connection (its backend state) that does not move with the client.
bool ClientSession::movable() const {
  return tls() == nullptr && pool_ != nullptr && !session_mode_ && pin_reason_.empty() &&
         state_ != ClientState::handshake && state_ != ClientState::login && state_ != ClientState::closing;
}

bool ClientSession::stays_to_move() const { return worker_.handing_over() && movable(); }

bool ClientSession::leaves_at_boundary() const { return worker_.draining() && !stays_to_move(); }

// Nothing of it is anywhere but in its state and the kernel's socket: no server, no settings
// being read back, no bytes read and not yet sent on, no reply still to write.
bool ClientSession::at_rest() const {
  return state_ == ClientState::idle && !scope_ && !wait_ticket_ && !capture_ && held_.empty() &&
         !cancel_held_ && own_query_ == OwnQuery::none && scanner_.at_boundary() &&
         !socket_->has_pending_output();
}

void ClientSession::move_if_at_rest() {
  if (stays_to_move() && at_rest()) move_to_new_process();
}

void ClientSession::move_to_new_process() {
  MovedClient moved;
  moved.old_id = id_;
  moved.transport = transport_;
  moved.user = user_;
  moved.database = database_;
  moved.startup_settings = pool_->key().settings;
  moved.settings = settings_;
  if (router_) {
    moved.statements = router_->statements();
    moved.custom_setting_names = router_->custom_setting_names();
  }
  moved.cancel_process_id = cancel_pid_;
  moved.cancel_secret = cancel_secret_;
  moved.auth_method = auth_method_;
  moved.scram_keys = worker_.scram_keys().find(database_, user_);
  // The socket travels as a duplicate: closing this process's copy below leaves the connection,
  // and whatever the client has sent since, to the new process.
  const int fd = ::fcntl(socket_->fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return leave_for_drain();
  if (!worker_.hand_over_client(fd, moved_client_to_json(moved))) {
    ::close(fd);
    log::warning("client ", id_, ": its state is too large to hand over; drained instead");
    return leave_for_drain();
  }
  close("handed over to the new process");
}

void ClientSession::resume(MovedClient moved) {
  user_ = std::move(moved.user);
  database_ = std::move(moved.database);
  cancel_pid_ = moved.cancel_process_id;
  cancel_secret_ = moved.cancel_secret;
  worker_.adopt_cancel_key(*this, cancel_pid_);
  auth_method_ = moved.auth_method;
  pool_ = worker_.pool_for(database_, user_, moved.startup_settings);
  if (pool_ == nullptr)
    return fail(sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist");
  pool_->client_joined();
  session_mode_ = pool_->settings().pool_mode == config::PoolMode::session;
  set_settings(std::move(moved.settings));
  if (!moved.statements.empty() || !moved.custom_setting_names.empty()) {
    router_ = std::make_unique<StatementRouter>(pool_->statement_registry(), pool_->setting_functions(),
                                                pool_->settings().session_state);
    router_->restore(moved.statements, moved.custom_setting_names);
  }
  set_state(ClientState::idle);
  // A drain here began before it arrived: it was at rest, so this is its boundary.
  if (worker_.draining()) drain();
}

}  // namespace sluice::frontend
