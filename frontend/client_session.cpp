#include "frontend/client_session.h"

#include <cerrno>
#include <utility>

#include "common/log.h"
#include "daemon/worker.h"
#include "net/scratch_buffer.h"
#include "net/turn_clock.h"
#include "pool/backend_state.h"
#include "protocol/backend_messages.h"
#include "protocol/sqlstate.h"
#include "protocol/startup_settings.h"

namespace sluice::frontend {
namespace {

// A goodbye between transactions needs no server.
bool is_lone_terminate(protocol::Bytes chunk) {
  return chunk.size() == 5 && chunk[0] == 'X' && protocol::read_u32(chunk.data() + 1) == 4;
}

// One whole simple Query and nothing after it: what most clients send and then wait on.
bool is_lone_simple_query(protocol::Bytes held) {
  return held.size() > 5 && held[0] == 'Q' && protocol::read_u32(held.data() + 1) == held.size() - 1;
}

// The first `length` bytes of `buffer`, taken out of it; moved, not copied, when nothing follows.
std::string take_front(std::string& buffer, std::size_t length) {
  std::string front = std::move(buffer);
  buffer.assign(front, length);
  front.resize(length);
  return front;
}

}  // namespace

std::string_view client_state_name(ClientState state) {
  switch (state) {
    case ClientState::handshake:
      return "handshake";
    case ClientState::login:
      return "login";
    case ClientState::idle:
      return "idle";
    case ClientState::waiting:
      return "waiting";
    case ClientState::active:
      return "active";
    case ClientState::closing:
      return "closing";
  }
  return "closing";
}

ClientSession::ClientSession(Worker& worker, std::uint64_t id, int fd, Transport transport)
    : worker_(worker),
      state_since_(net::turn_clock::now()),  // as set_state(): no state older than its connection
      socket_(net::PollSocket::open(worker.loop(), fd, /*owns_fd=*/true, this)),
      scanner_(static_cast<std::uint32_t>(worker.config().limits.message_max)),
      last_activity_ms_(uv_now(worker.loop())),
      id_(id),
      transport_(transport),
      connected_at_(state_since_) {
  // Replies to several clients in one turn leave in one system call with the queries to servers
  // (net/send_batch.h).
  if (socket_) socket_->batch_sends();
}

ClientSession::~ClientSession() = default;

void ClientSession::set_state(ClientState state) {
  state_ = state;
  state_since_ = net::turn_clock::now();
}

void ClientSession::close(std::string_view reason) {
  if (state_ == ClientState::closing) return;
  log::debug("client ", id_, ": closing because: ", reason);
  if (wait_ticket_) {
    pool_->cancel_wait(*wait_ticket_);
    wait_ticket_.reset();
  }
  if (scope_) scope_.end(reason, !scanner_.at_boundary());
  if (capture_) capture_->receiver = nullptr;
  if (pool_ != nullptr) pool_->client_left();
  set_state(ClientState::closing);
  net::PollSocket::close_when_flushed(std::move(socket_));
  worker_.client_closed(*this);
}

void ClientSession::fail(const char* sqlstate, const std::string& message, std::string_view detail) {
  if (state_ == ClientState::closing) return;
  auto& counters = worker_.client_counters();
  counters.error_sent(sqlstate);
  if (state_ == ClientState::handshake || state_ == ClientState::login)
    counters.login(metrics::login_result_of(sqlstate));
  std::string error;
  protocol::append_error_response(error, protocol::Severity::fatal, sqlstate, message, detail);
  socket_->write(error);
  close(message);
}

void ClientSession::on_socket_error(int uv_status) {
  close("client socket: " + net::PollSocket::describe_error(uv_status));
}

void ClientSession::on_readable() {
  switch (state_) {
    case ClientState::handshake:
      return read_startup();
    case ClientState::idle:
    case ClientState::active:
    case ClientState::waiting:
      return read_client();
    case ClientState::login:
    case ClientState::closing:
      socket_->set_reading(false);
      return;
  }
}

// The startup packet may arrive in pieces; it is the only thing buffered.
void ClientSession::read_startup() {
  const auto& limits = worker_.config().limits;
  // Direct TLS only opens a connection, as in PostgreSQL 17: not after an answered GSSENCRequest.
  if (startup_buffer_.empty() && !ssl_request_seen_ && !gss_request_seen_ && offers_tls() &&
      start_direct_tls())
    return;
  // A TLS record's plaintext fits: OpenSSL keeps nothing back (net/poll_socket.h).
  const auto chunk = net::scratch_buffer();
  const ssize_t n = socket_->read(chunk.data(), chunk.size());
  if (n == -EAGAIN) return;
  if (n == 0) return close("client closed during startup");
  if (n < 0) return close(describe_read_failure(n));
  startup_buffer_.append(reinterpret_cast<const char*>(chunk.data()), static_cast<std::size_t>(n));
  if (auth_) return read_auth_messages();

  while (state_ == ClientState::handshake && !auth_) {
    const auto length = protocol::startup_packet_length(
        protocol::as_bytes(startup_buffer_), static_cast<std::uint32_t>(limits.startup_packet_max));
    if (!length) return fail(length.error().sqlstate, length.error().message);
    if (!*length || startup_buffer_.size() < **length) return;
    // Taken out of the buffer before it is handled (the checks look at what follows it), kept
    // until then: the packet's parameters point into it.
    const std::string packet_bytes = take_front(startup_buffer_, **length);
    const auto packet = protocol::parse_startup_packet(protocol::as_bytes(packet_bytes));
    if (!packet) return fail(packet.error().sqlstate, packet.error().message);
    handle_startup(*packet);
  }
}

void ClientSession::handle_startup(const protocol::StartupPacket& packet) {
  using protocol::StartupKind;
  if (packet.kind == StartupKind::ssl_request || packet.kind == StartupKind::gssenc_request) {
    return answer_encryption_request(packet.kind);
  }
  if (packet.kind == StartupKind::cancel_request) {
    worker_.cancel(packet.cancel_process_id, packet.cancel_secret_key);
    return close("cancel request handled");
  }
  if (!startup_buffer_.empty())
    return fail(sqlstate::kProtocolViolation, "unexpected data after startup packet");
  std::string reply;
  const std::uint32_t minor = packet.protocol_version & 0xffff;
  if (minor > 0 || !packet.protocol_options.empty()) {
    protocol::append_negotiate_protocol_version(reply, 0, packet.protocol_options);
  }
  const std::string_view* user = packet.parameter("user");
  if (user == nullptr || user->empty()) {
    return fail(sqlstate::kInvalidAuthorizationSpecification,
                "no PostgreSQL user name specified in startup packet");
  }
  user_ = *user;
  const std::string_view* database = packet.parameter("database");
  database_ = database != nullptr && !database->empty() ? *database : user_;

  auto settings = protocol::startup_settings(packet);
  if (!settings) return fail(settings.error().sqlstate, settings.error().message);
  startup_settings_ = std::move(*settings);
  if (!reply.empty()) socket_->write(reply);

  auto start = ClientAuth::start(worker_.config(), auth_client());
  if (start.needs_lookup) return look_up_secret(*start.method);
  begin_auth(std::move(start));
}

AuthClient ClientSession::auth_client() const {
  return AuthClient{
      .transport = transport_, .fd = socket_->fd(), .tls = tls(), .user = user_, .database = database_};
}

void ClientSession::begin_auth(ClientAuth::Start start) {
  auth_ = std::move(start.exchange);
  auth_stepped(start.step, start.method);
}

// auth.query: the client waits, unread, while the server is asked; the login timeout still runs.
void ClientSession::look_up_secret(config::AuthType method) {
  socket_->set_reading(false);
  looking_up_secret_ = true;
  auto request = worker_.secret_lookup().find(
      database_, user_, [this, method](const LookedUpSecret& found) { secret_found(method, found); });
  if (looking_up_secret_) secret_request_ = std::move(request);  // not answered from the cache
}

void ClientSession::secret_found(config::AuthType method, const LookedUpSecret& found) {
  looking_up_secret_ = false;
  secret_request_.reset();
  if (state_ == ClientState::closing) return;
  if (found.failed) {
    log::warning("client ", id_, ": login of \"", user_, "\" refused: ", found.why_none);
    return fail(sqlstate::kConnectionFailure, "could not look up the password of role \"" + user_ + "\"");
  }
  socket_->set_reading(true);
  begin_auth(
      ClientAuth::challenge(method, found.secret ? &*found.secret : nullptr, found.why_none, auth_client()));
}

void ClientSession::read_auth_messages() {
  // PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: no password message is longer.
  constexpr std::uint32_t kMaxAuthMessage = 65535;
  while (auth_ && startup_buffer_.size() >= 5) {
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(startup_buffer_.data());
    const char type = startup_buffer_[0];
    const std::uint32_t length = protocol::read_u32(bytes + 1);
    if (type == 'X') return close("client terminated during authentication");
    if (type != 'p') return fail(sqlstate::kProtocolViolation, auth_->unexpected_message(type));
    if (length < 4 || length > kMaxAuthMessage)
      return fail(sqlstate::kProtocolViolation, "invalid message length");
    if (startup_buffer_.size() < length + 1) return;
    const auth::AuthStep step = auth_->on_response(protocol::Bytes(bytes + 5, length - 4));
    startup_buffer_.erase(0, length + 1);
    auth_stepped(step, auth_->method());
  }
}

// `method`: the one this client was given (hba resolved), none when refused without one.
void ClientSession::auth_stepped(const auth::AuthStep& step, std::optional<config::AuthType> method) {
  if (!step.reply.empty()) socket_->write(step.reply);
  switch (step.verdict) {
    case auth::AuthStep::Verdict::more:
      return;
    case auth::AuthStep::Verdict::failed:
      // The client hears PostgreSQL's words; only the log says what really failed.
      log::warning("client ", id_, ": authentication failed for user \"", user_, "\" (",
                   method ? auth_method_name(*method) : "none", "): ", step.error.log_reason);
      auth_.reset();
      return fail(step.error.sqlstate, step.error.message, step.error.detail);
    case auth::AuthStep::Verdict::ok:
      if (auth_) {
        log::debug("client ", id_, ": \"", user_, "\" authenticated with ", auth_->mechanism(), " (",
                   auth_method_name(*method), ")");
        // SCRAM pass-through: its database's servers may log in as this role with the same proof.
        if (const auto keys = auth_->scram_keys()) worker_.scram_keys().remember(database_, user_, *keys);
      }
      auth_.reset();
      auth_method_ = method;
      if (!startup_buffer_.empty())
        return fail(sqlstate::kProtocolViolation, "unexpected data after the authentication exchange");
      return log_in();
  }
}

void ClientSession::log_in() {
  pool_ = worker_.pool_for(database_, user_, startup_settings_);
  protocol::StartupSettings().swap(startup_settings_);
  if (pool_ == nullptr)
    return fail(sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist");
  pool_->client_joined();
  if (!worker_.accepting_logins())
    return fail(sqlstate::kCannotConnectNow, "the database system is shutting down");
  session_mode_ = pool_->settings().pool_mode == config::PoolMode::session;
  worker_.assign_cancel_key(*this, cancel_pid_, cancel_secret_);
  std::string().swap(startup_buffer_);

  set_state(ClientState::login);
  // The welcome needs a server's ParameterStatus values; session mode needs its server anyway.
  // Welcomed at once, the socket keeps reading: each stop and start of a libuv poll is two
  // epoll_ctl calls, a quarter of what a short-lived connection costs the loop.
  if (pool_->parameter_statuses() != nullptr && !session_mode_) return send_welcome();
  socket_->set_reading(false);
  ask_for_scope();
}

void ClientSession::send_welcome() {
  // The loop thread's one welcome buffer, its capacity kept: no allocation per login. The socket
  // copies what it cannot send at once. AuthenticationOk, BackendKeyData and ReadyForQuery take
  // 28 bytes beside the parameters, which a session's own server reports in about 400.
  constexpr std::size_t kFramingBytes = 28;
  constexpr std::size_t kServersParameterBytes = 512;
  thread_local std::string welcome;
  welcome.clear();
  welcome.reserve(kFramingBytes + (scope_ ? kServersParameterBytes : pool_->parameter_statuses()->size()));
  protocol::append_authentication_ok(welcome);
  // Session mode: what its own server reports; otherwise what the pool's servers do.
  if (scope_) {
    protocol::append_parameter_statuses(welcome, scope_.server().parameters());
  } else {
    welcome += *pool_->parameter_statuses();
  }
  protocol::append_backend_key_data(welcome, cancel_pid_, cancel_secret_);
  protocol::append_ready_for_query(welcome, 'I');
  if (!socket_->write(welcome)) return close("client gone during login");
  log::debug("client ", id_, ": logged in to ", pool_->name());
  worker_.client_counters().login(metrics::LoginResult::ok);
  set_state(scope_ ? ClientState::active : ClientState::idle);
  socket_->set_reading(true);
  move_if_at_rest();  // it logged in during a live upgrade's grace: its first query runs there
}

void ClientSession::read_client() {
  const auto buffer = net::scratch_buffer();
  const ssize_t n = socket_->read(buffer.data(), buffer.size());
  if (n == -EAGAIN) return;
  if (n == 0) return close("client disconnected");
  if (n < 0) return close(describe_read_failure(n));
  const protocol::Bytes chunk(buffer.data(), static_cast<std::size_t>(n));
  last_activity_ms_ = uv_now(worker_.loop());
  if (!scope_ || !scope_.server().busy()) note_request_start(last_activity_ms_);
  pool_->metrics().client_bytes_received += chunk.size();
  if (!scope_ && is_lone_terminate(chunk) && scanner_.at_boundary()) return close("client terminated");
  if (!scope_ && state_ != ClientState::waiting) {
    set_state(ClientState::waiting);
    request_timer_.client_sent(state_since_);  // the state change has just read the clock
    ask_for_scope();
    if (state_ == ClientState::closing) return;
  }
  if (!scope_) return hold(chunk);
  if (!request_timer_.query_outstanding()) request_timer_.client_sent(net::turn_clock::now());
  forward_to_server(chunk);
}

// The pool may grant or fail before acquire returns (both callbacks run
// inside it); only a waiter still queued keeps its ticket.
void ClientSession::ask_for_scope() {
  if (capture_) return;  // asked again once its settings are read
  auto ticket = pool_->acquire(*this, id_);
  if (ticket && !scope_ && state_ != ClientState::closing) wait_ticket_ = ticket;
}

// Bytes read while waiting for a server are kept until it comes. Reading goes
// on (a client usually sends one query and waits, so this costs no epoll
// changes) until the held bytes reach a bound; then the kernel keeps the rest.
void ClientSession::hold(protocol::Bytes chunk) {
  held_.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
  if (held_.size() >= kMaxHeldBytes) socket_->set_reading(false);
}

void ClientSession::on_scope_granted(pool::Scope scope) {
  wait_ticket_.reset();
  scope_ = std::move(scope);
  scope_.server().attach(this);
  if (state_ == ClientState::login) {
    if (session_mode_) return send_welcome();
    scope_.end("login parameters fetched");
    return send_welcome();
  }
  set_state(ClientState::active);
  if (held_.empty()) return;  // granted inside acquire: the caller forwards
  forward_held();
}

void ClientSession::on_settings_captured(std::optional<pool::SessionSettings> settings,
                                         const std::string& why_not) {
  capture_.reset();
  if (!settings) {
    return fail(sqlstate::kConnectionFailure,
                "this session's settings were lost with its server connection: " + why_not);
  }
  if (*settings != settings_) set_settings(std::move(*settings));
  if (state_ == ClientState::waiting && !scope_ && !wait_ticket_) return ask_for_scope();
  move_if_at_rest();
}

void ClientSession::set_settings(pool::SessionSettings settings) {
  settings_ = std::move(settings);
  settings_restore_.clear();
  if (!settings_.empty())
    protocol::append_query(settings_restore_, pool::apply_session_settings_query(settings_));
}

void ClientSession::on_scope_failed(const char* sqlstate, const std::string& message) {
  wait_ticket_.reset();
  fail(sqlstate, message);
}

namespace {

// Message types a client may send once logged in (PostgreSQL's frontend set).
bool is_frontend_message_type(char type) {
  switch (type) {
    case 'B':
    case 'C':
    case 'D':
    case 'E':
    case 'F':
    case 'H':
    case 'P':
    case 'Q':
    case 'S':
    case 'd':
    case 'c':
    case 'f':
    case 'p':
    case 'X':
      return true;
    default:
      return false;
  }
}

}  // namespace

void ClientSession::forward_to_server(protocol::Bytes chunk) {
  pool::ServerConnection& server = scope_.server();
  // Made on first use: a client that only logs in and waits costs no router.
  if (!router_ && server.tracks_statements())
    router_ = std::make_unique<StatementRouter>(pool_->statement_registry(), pool_->setting_functions(),
                                                pool_->settings().session_state);
  StatementRouter* router = server.tracks_statements() ? router_.get() : nullptr;
  // The client's settings go first, alone: its bytes wait for their replies (on_own_query_done),
  // so nothing of the client's can run on the server without them.
  if (own_query_ != OwnQuery::none) return hold(chunk);
  if (!settings_restore_.empty() && !server.carries_client_settings()) {
    own_query_ = OwnQuery::settings_restore;
    if (!server.send_settings_restore(protocol::as_bytes(settings_restore_))) return server_write_failed();
    return hold(chunk);
  }
  if (router != nullptr) router->begin_chunk(chunk, server);
  std::optional<protocol::MessageEvent> stop;  // Terminate, or a type no client may send
  const auto result = scanner_.scan(chunk, [&](const protocol::MessageEvent& event) {
    if (event.type == 'X' || !is_frontend_message_type(event.type)) {
      stop = event;
      return false;
    }
    if (router != nullptr) {
      router->on_message(event);
    } else {
      server.note_frontend_message(event.type);
    }
    return true;
  });
  if (result.status == protocol::ScanStatus::bad_length) {
    return fail(sqlstate::kProtocolViolation, "invalid message length");
  }
  if (result.status == protocol::ScanStatus::too_long) {
    return fail(sqlstate::kProtocolViolation, "message exceeds the configured limits.message_max");
  }
  if (!stop) {
    const protocol::Bytes out =
        router != nullptr ? router->finish_chunk(chunk.size(), scanner_.pending_header_bytes()) : chunk;
    if (!out.empty() && !server.send(out)) return server_write_failed();
    if (router != nullptr) {
      const bool sent_nothing = out.empty();
      router->release_memory();  // now, while its lines are warm, rather than at the release
      server.deliver_ready_replies();
      if (state_ == ClientState::closing) return;
      // All answered here (a lone Close, say): no reply will come to end the scope.
      if (sent_nothing && server.idle_clean() && !server.has_pending_output()) return on_server_ready();
    }
    if (server.backed_up()) socket_->set_reading(false);  // resume in on_server_drained
    return;
  }
  // The stopping message is not forwarded: what came before it is, and the
  // server stays with the pool. One that began in an earlier chunk already
  // sent its first bytes, leaving the server mid-message.
  if (stop->start == protocol::MessageEvent::kEarlier) {
    scope_.end("client stopped inside a message", /*client_mid_message=*/true);
  } else if (stop->start > 0) {
    const protocol::Bytes before =
        router != nullptr ? router->finish_chunk(stop->start, 0) : chunk.first(stop->start);
    if (!server.send(before)) return server_write_failed();
  }
  if (stop->type == 'X') return close("client terminated");
  if (scope_) scope_.end("client sent an invalid message type");
  fail(sqlstate::kProtocolViolation,
       "invalid frontend message type " + std::to_string(static_cast<unsigned char>(stop->type)));
}

void ClientSession::on_server_backed_up() {
  if (state_ == ClientState::active) socket_->set_reading(false);  // resume in on_server_drained
}

void ClientSession::on_server_drained() {
  // Every batched send to the server ends here: reading paused for held bytes stays paused.
  if (state_ == ClientState::active && held_.size() < kMaxHeldBytes) socket_->set_reading(true);
  move_if_at_rest();
}

void ClientSession::on_server_data(protocol::Bytes bytes) {
  last_activity_ms_ = uv_now(worker_.loop());
  pool_->metrics().client_bytes_sent += bytes.size();
  if (!socket_->write(bytes)) return close("client write failed");
  if (socket_->backed_up()) scope_.server().set_reading(false);  // resume in on_drained
}

void ClientSession::on_backed_up() {
  if (scope_) scope_.server().set_reading(false);  // resume in on_drained
}

void ClientSession::on_drained() {
  if (scope_) scope_.server().set_reading(true);
  move_if_at_rest();  // its last reply had to reach the client first
}

void ClientSession::on_server_answered() {
  request_timer_.answered(scope_.server().transaction_status(), net::turn_clock::now(), pool_->metrics());
}

void ClientSession::on_server_ready() {
  // A transaction that ends here usually releases its server at once: release_server() times it
  // with the clock read it makes anyway.
  if (session_mode_ || !pin_reason_.empty() || scope_.server().backend_state_touched())
    request_timer_.answered('I', net::turn_clock::now(), pool_->metrics());
  if (!scanner_.at_boundary()) return;
  if (leaves_at_boundary()) return leave_for_drain();
  if (session_mode_) return move_if_at_rest();
  pool::ServerConnection& server = scope_.server();
  if (server.session_lock_surely_held()) return keep_backend_state(pool::with_advisory_locks(pin_reason_));
  if (server.backend_state_touched()) {  // the server says whether the client keeps it
    own_query_ = OwnQuery::backend_state_probe;
    if (!server.send_backend_state_probe()) server_write_failed();
    return;
  }
  if (pin_reason_.empty()) return release_server();
  move_if_at_rest();
}

void ClientSession::release_server() {
  // The router marks what may change settings; without one (max_prepared_statements: 0) every
  // release resets, and a SET lasts for its transaction.
  pool::ServerConnection& server = scope_.server();
  if (server.session_changed() && router_) {
    capture_ =
        std::make_shared<pool::SettingsCapture>(pool::SettingsCapture{this, router_->custom_setting_names()});
    server.capture_settings_for(capture_);
  }
  scope_.end("transaction complete");
  if (state_ == ClientState::closing) return;  // the release failed at once and took its settings
  set_state(ClientState::idle);
  request_timer_.answered('I', state_since_, pool_->metrics());
  socket_->set_reading(true);
  if (held_.empty()) return move_if_at_rest();
  if (is_lone_terminate(protocol::as_bytes(held_)) && scanner_.at_boundary())
    return close("client terminated");
  // It sent more while its backend state was read: a server for that.
  set_state(ClientState::waiting);
  ask_for_scope();
}

void ClientSession::on_own_query_done(std::optional<std::vector<protocol::QueryReply>> replies) {
  const OwnQuery query = std::exchange(own_query_, OwnQuery::none);
  // Nothing of the client's has run since its last ReadyForQuery: a drain that began meanwhile
  // found it busy, and this is its boundary.
  if (leaves_at_boundary()) return leave_for_drain();
  if (query == OwnQuery::settings_restore) return settings_restored(replies);
  backend_state_read(replies);
}

void ClientSession::settings_restored(const std::optional<std::vector<protocol::QueryReply>>& replies) {
  if (!replies || replies->size() != 1) {
    scope_.discard("the replies to the client's settings restore could not be read");
    return fail(sqlstate::kConnectionFailure,
                "could not restore this session's settings on a server connection: unreadable replies");
  }
  if (const auto& refusal = (*replies)[0].error) {
    scope_.discard("PostgreSQL refused the client's session settings: " + refusal->describe());
    return fail(refusal->sqlstate.c_str(),
                "could not restore this session's settings on a server connection: " + refusal->message);
  }
  forward_held();
}

void ClientSession::backend_state_read(const std::optional<std::vector<protocol::QueryReply>>& replies) {
  pool::ServerConnection& server = scope_.server();
  const auto state = replies && replies->size() == 1 ? pool::read_backend_state((*replies)[0]) : std::nullopt;
  // When in doubt, it keeps its server.
  std::string reason = state ? *state : "its backend state could not be read";
  if (!state && replies && replies->size() == 1 && (*replies)[0].error)
    reason += " (" + (*replies)[0].error->describe() + ")";
  if (server.library_loaded())
    reason += std::string(reason.empty() ? "" : ", ") + "a loaded library or dblink connection";
  if (reason.empty()) {
    if (!pin_reason_.empty())
      log::info("client ", id_, ": unpinned from server ", server.id(), ": its backend state is gone");
    pin_reason_.clear();
    server.note_holds_backend_state(false);
    return release_server();
  }
  keep_backend_state(std::move(reason));
}

// Its server holds state that cannot move (`reason` says which): the client keeps it.
void ClientSession::keep_backend_state(std::string reason) {
  pool::ServerConnection& server = scope_.server();
  server.note_holds_backend_state(true);
  if (pool_->settings().session_state == config::SessionStatePolicy::refuse) {
    log::warning("client ", id_, ": closed: its session holds ", reason, " on server ", server.id(),
                 ", which session_state \"refuse\" does not allow");
    scope_.end("backend state refused: " + reason);  // the reset wipes it, and proves it gone
    return fail(sqlstate::kFeatureNotSupported,
                "this session holds state on its server connection that this pool refuses: " + reason);
  }
  if (pin_reason_ != reason)
    log::info("client ", id_, ": pinned to server ", server.id(), ": it holds ", reason);
  pin_reason_ = std::move(reason);
  if (leaves_at_boundary()) return leave_for_drain();  // it stayed to move, and now cannot
  forward_held();
  move_if_at_rest();  // nothing held: it moves with its server
}

// A server is the client's, or its own query is done: the client's bytes held meanwhile go now,
// and a cancel the client sent for them follows them.
void ClientSession::forward_held() {
  std::string held;
  held.swap(held_);
  socket_->set_reading(true);
  // The cancel belongs to these bytes: it follows them, or goes with them when they are answered
  // without a server running them.
  const bool cancel = std::exchange(cancel_held_, false);
  if (held.empty()) return;
  // A request held while the client queued or sluiced's own query ran starts now, as for
  // PostgreSQL's statement_timeout: the wait was not the query's.
  note_request_start(uv_now(worker_.loop()));
  forward_to_server(protocol::as_bytes(held));
  // A small buffer serves the next wait too: no allocation per queued query under load.
  if (held_.empty() && held.capacity() <= kKeptHeldCapacity) {
    held.clear();
    held_.swap(held);
  }
  if (!cancel || state_ == ClientState::closing) return;
  if (!held_.empty()) {
    cancel_held_ = true;  // held again, behind sluiced's own query: it follows them later
  } else if (scope_ && own_query_ == OwnQuery::none) {
    scope_.server().forward_cancel_once_read();
  }
}

bool ClientSession::at_transaction_boundary() const {
  if (state_ == ClientState::idle) return true;
  return state_ == ClientState::active && scope_ && scope_.server().idle_clean() && scanner_.at_boundary() &&
         !scope_.server().has_pending_output();
}

// The last reply is already written: the FATAL follows it, then the close.
void ClientSession::leave_for_drain() {
  if (scope_) scope_.end("drain: client closed at a transaction boundary");
  fail(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
}

void ClientSession::drain() {
  switch (state_) {
    case ClientState::handshake:
    case ClientState::login:
      return fail(sqlstate::kCannotConnectNow, "the database system is shutting down");
    case ClientState::idle:
    case ClientState::active:
      if (stays_to_move()) return move_if_at_rest();
      if (at_transaction_boundary()) leave_for_drain();
      return;
    case ClientState::waiting:
    case ClientState::closing:
      return;
  }
}

void ClientSession::check_timeouts(std::uint64_t now_ms) {
  const auto& limits = worker_.config().limits;
  const std::uint64_t quiet_ms = now_ms - last_activity_ms_;
  if (state_ == ClientState::handshake) {
    if (quiet_ms >= static_cast<std::uint64_t>(limits.login_timeout_ms)) {
      fail(sqlstate::kProtocolViolation,
           "login timeout: startup not completed within " + std::to_string(limits.login_timeout_ms) + " ms");
    }
    return;
  }
  if (pool_ == nullptr) return;
  if (check_running_limits(now_ms)) return;
  const auto& settings = pool_->settings();
  const bool in_transaction = state_ == ClientState::active && scope_ && !scope_.server().busy() &&
                              scope_.server().transaction_status() != 'I' && scanner_.at_boundary();
  if (in_transaction && settings.idle_transaction_timeout_ms > 0 &&
      quiet_ms >= static_cast<std::uint64_t>(settings.idle_transaction_timeout_ms)) {
    scope_.end("idle_transaction_timeout");
    return fail(sqlstate::kIdleInTransactionSessionTimeout,
                "terminating connection due to idle-in-transaction timeout");
  }
  const bool idle =
      state_ == ClientState::idle || (state_ == ClientState::active && at_transaction_boundary());
  if (idle && settings.client_idle_timeout_s > 0 &&
      quiet_ms >= static_cast<std::uint64_t>(settings.client_idle_timeout_s) * 1000) {
    if (scope_) scope_.end("client_idle_timeout");
    fail(sqlstate::kIdleSessionTimeout, "terminating connection due to idle-session timeout");
  }
}

bool ClientSession::force_close_for_drain() {
  if (state_ == ClientState::closing) return false;
  const bool had_scope = static_cast<bool>(scope_);
  if (had_scope) {
    log::warning("client ", id_, ": drain deadline passed inside a transaction; its scope is forced");
    scope_.end("drain deadline passed", !scanner_.at_boundary());
  }
  fail(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
  return had_scope;
}

// The server went away between our reads: the client hears it as a lost
// server, exactly as when the loss is noticed on the read side.
void ClientSession::server_write_failed() { on_server_lost("could not send to the server"); }

void ClientSession::on_server_lost(const std::string& reason) {
  scope_.discard(reason);
  fail(sqlstate::kConnectionFailure, "server connection lost: " + reason);
}

// What a direct connection does with a cancel: stop the statement the client sent. Through
// sluiced that statement may not have reached a server yet.
void ClientSession::forward_cancel() {
  if (scope_ && own_query_ == OwnQuery::none) return scope_.server().forward_cancel();
  if (held_.empty()) return;  // nothing sent since the last reply: nothing to cancel, as directly
  if (state_ == ClientState::waiting && is_lone_simple_query(protocol::as_bytes(held_))) {
    return answer_cancelled_while_waiting();
  }
  // Behind sluiced's own query, or more than one statement waiting for a server: the cancel
  // follows the held bytes to the server (forward_held).
  cancel_held_ = true;
}

// A client waiting for a server cancelled its one statement: it leaves the queue, and the
// statement is answered as PostgreSQL answers one cancelled before it returned a row.
void ClientSession::answer_cancelled_while_waiting() {
  if (wait_ticket_) {
    pool_->cancel_wait(*wait_ticket_);
    wait_ticket_.reset();
  }
  held_.clear();
  cancel_held_ = false;
  log::debug("client ", id_, ": cancelled a statement still waiting for a server: answered without a server");
  std::string reply;
  protocol::append_error_response(reply, protocol::Severity::error, sqlstate::kQueryCanceled,
                                  "canceling statement due to user request");
  protocol::append_ready_for_query(reply, 'I');
  worker_.client_counters().error_sent(sqlstate::kQueryCanceled);
  if (!socket_->write(reply)) return close("client write failed");
  set_state(ClientState::idle);
  request_timer_.answered('I', state_since_, pool_->metrics());
  socket_->set_reading(true);
  // This is its boundary: the drain skipped it waiting.
  if (leaves_at_boundary()) return leave_for_drain();
  move_if_at_rest();
}

}  // namespace sluice::frontend
