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

// TLS state lives in this process's OpenSSL. A client that keeps its server between transactions
// (session mode, or pinned in transaction mode) moves with it when that can travel (a plain socket).
bool ClientSession::movable() const {
  if (tls() != nullptr || pool_ == nullptr) return false;
  if (state_ == ClientState::handshake || state_ == ClientState::login || state_ == ClientState::closing)
    return false;
  return !keeps_server() || (scope_ && scope_.server().can_travel());
}

bool ClientSession::stays_to_move() const { return worker_.handing_over() && movable(); }

bool ClientSession::leaves_at_boundary() const { return worker_.draining() && !stays_to_move(); }

// Nothing of it is anywhere but in its state and the kernel's sockets: no settings being read
// back, no bytes read and not yet sent on, no reply still to write, and no server (transaction
// mode) or its server between transactions (session mode).
bool ClientSession::at_rest() const {
  const bool nothing_pending = !wait_ticket_ && !capture_ && held_.empty() && !cancel_held_ &&
                               own_query_ == OwnQuery::none && scanner_.at_boundary() &&
                               !socket_->has_pending_output();
  if (!nothing_pending) return false;
  if (keeps_server()) return state_ == ClientState::active && scope_ && scope_.server().at_rest();
  return state_ == ClientState::idle && !scope_;
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
  moved.pin_reason = pin_reason_;
  if (keeps_server()) moved.server = scope_.server().moved();
  auto message = Worker::handover_message(moved_client_to_json(moved), moved.server ? 2 : 1);
  if (!message) {
    log::warning("client ", id_, ": its state is too large to hand over; drained instead");
    return leave_for_drain();
  }
  // The socket travels as a duplicate: closing this process's copy below leaves the connection,
  // and whatever the client has sent since, to the new process. A second duplicate stays with the
  // daemon until the new process has said what became of the client: should it die first, or
  // decline the client, the client is drained from here (upgrade::UnconfirmedMoves).
  const int fd = ::fcntl(socket_->fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return leave_for_drain();
  const int kept = ::fcntl(socket_->fd(), F_DUPFD_CLOEXEC, 0);
  if (kept < 0) {
    ::close(fd);
    return leave_for_drain();
  }
  std::vector<int> descriptors{fd};
  if (moved.server) {
    const int server_fd = scope_.hand_over();
    if (server_fd < 0) {
      ::close(fd);
      ::close(kept);
      return leave_for_drain();
    }
    descriptors.push_back(server_fd);
  }
  worker_.hand_over_client(std::move(*message), std::move(descriptors), kept);
  close("handed over to the new process");
}

namespace {

// The pool's servers keep a client's named protocol-level statements (prepared again under their
// own names as it uses them): transaction mode with pool.max_prepared_statements above 0.
bool tracks_statements(const config::PoolSettings& settings) {
  return settings.pool_mode == config::PoolMode::transaction && settings.max_prepared_statements > 0;
}

}  // namespace

// The config may have changed with the upgrade: a moved client is let in again as a fresh login
// would be, up to the point where that login would ask for a password. tls.mode "require" for a
// TCP client without TLS, no hba line or a reject line, peer for another OS user, cert (which needs
// TLS): it hears that refusal, PostgreSQL's words. A method that asks for a password counts as met
// when the client proved one to the old process; one that authenticated without (trust, peer) is
// refused as a wrong password would be, since it never gave one.
std::optional<auth::AuthError> ClientSession::refusal_under_this_config() const {
  const ClientAuth::Start start = ClientAuth::start(worker_.config(), auth_client());
  if (start.step.verdict == auth::AuthStep::Verdict::failed) return start.step.error;
  if (start.step.verdict == auth::AuthStep::Verdict::ok && !start.needs_lookup) return std::nullopt;
  const bool proved_a_password =
      auth_method_ == config::AuthType::md5 || auth_method_ == config::AuthType::scram_sha_256;
  if (proved_a_password) return std::nullopt;
  return auth::AuthError{
      .sqlstate = sqlstate::kInvalidPassword,
      .message = "password authentication failed for user \"" + user_ + "\"",
      .detail = {},
      .log_reason = "this config asks it for a password, and it logged in to the old process with " +
                    std::string(auth_method_ ? auth_method_name(*auth_method_) : "no method")};
}

bool ClientSession::resume(MovedClient moved, int server_fd) {
  user_ = std::move(moved.user);
  database_ = std::move(moved.database);
  cancel_pid_ = moved.cancel_process_id;
  cancel_secret_ = moved.cancel_secret;
  worker_.adopt_cancel_key(*this, cancel_pid_);
  auth_method_ = moved.auth_method;
  if (const auto refusal = refusal_under_this_config()) {
    if (server_fd >= 0) ::close(server_fd);
    log::warning("client ", id_, ": moved in, but this process's config refuses \"", user_,
                 "\": ", refusal->log_reason);
    fail(refusal->sqlstate, refusal->message, refusal->detail);
    return true;
  }
  pool::Pool* pool = worker_.pool_for(database_, user_, moved.startup_settings);
  if (pool == nullptr) {
    if (server_fd >= 0)
      ::close(server_fd);  // PostgreSQL ends the backend, and rolls back nothing: it was idle
    fail(sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist");
    return true;
  }
  if (!moved.statements.empty() && !tracks_statements(pool->settings())) {
    // Its named statements would be unknown on this process's servers (its next Execute would fail
    // with 26000): the old process drains it, at rest, and it reconnects into this config.
    if (server_fd >= 0) ::close(server_fd);
    log::info("client ", id_, ": moved in with ", moved.statements.size(),
              " named prepared statements, which this config does not track: declined, the old process "
              "drains it");
    close("declined: its prepared statements cannot be carried");
    return false;
  }
  pool_ = pool;
  pool_->client_joined();
  session_mode_ = pool_->settings().pool_mode == config::PoolMode::session;
  set_settings(std::move(moved.settings));
  if (!moved.statements.empty() || !moved.custom_setting_names.empty()) {
    router_ = std::make_unique<StatementRouter>(pool_->statement_registry(), pool_->setting_functions(),
                                                pool_->settings().session_state);
    router_->restore(moved.statements, moved.custom_setting_names);
  }
  pin_reason_ = std::move(moved.pin_reason);
  if (moved.server) {
    if (!keeps_server()) {
      ::close(server_fd);
      fail(sqlstate::kConnectionFailure, "the pool mode of database \"" + database_ +
                                             "\" changed in the upgrade: this session cannot go on");
      return true;
    }
    scope_ = pool_->adopt_server(server_fd, *moved.server, id_);
    if (!scope_) {
      fail(sqlstate::kConnectionFailure, "server connection lost: it could not be taken over");
      return true;
    }
    scope_.server().attach(this);
  }
  set_state(scope_ ? ClientState::active : ClientState::idle);
  // A drain here began before it arrived: it was at rest, so this is its boundary.
  if (worker_.draining()) drain();
  return true;
}

}  // namespace sluice::frontend
