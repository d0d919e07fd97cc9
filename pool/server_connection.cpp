#include "pool/server_connection.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "net/scratch_buffer.h"
#include "pool/backend_state.h"
#include "pool/host_resolution.h"
#include "pool/pool.h"
#include "protocol/backend_messages.h"
#include "protocol/error_fields.h"
#include "protocol/query_replies.h"

namespace sluice::pool {
namespace {

// ParameterStatus values a client expects at login; copied from the server.
constexpr std::array<const char*, 14> kReportedParameters = {"server_version",
                                                             "server_encoding",
                                                             "client_encoding",
                                                             "application_name",
                                                             "DateStyle",
                                                             "IntervalStyle",
                                                             "TimeZone",
                                                             "integer_datetimes",
                                                             "standard_conforming_strings",
                                                             "is_superuser",
                                                             "session_authorization",
                                                             "default_transaction_read_only",
                                                             "in_hot_standby",
                                                             "scram_iterations"};

// How long a cancel waits for PostgreSQL to read the statement it is for (a few bytes on a
// local socket: in practice the first millisecond poll); then it goes anyway.
constexpr std::chrono::milliseconds kCancelReadLimit{1000};
}  // namespace

std::string_view state_name(ServerState state) {
  switch (state) {
    case ServerState::connecting:
      return "connecting";
    case ServerState::idle:
      return "idle";
    case ServerState::active:
      return "active";
    case ServerState::resetting:
      return "resetting";
    case ServerState::closing:
      return "closing";
  }
  return "closing";
}

ServerConnection::ServerConnection(Pool& pool, std::uint64_t id)
    : pool_(pool),
      tracks_statements_(pool.settings().pool_mode == config::PoolMode::transaction &&
                         pool.settings().max_prepared_statements > 0),
      filters_replies_(tracks_statements_),
      scanner_(static_cast<std::uint32_t>(pool.message_max())),
      state_since_(Clock::now()),
      statements_(static_cast<std::size_t>(pool.settings().max_prepared_statements)),
      id_(id),
      created_at_(state_since_),
      self_(std::make_shared<ServerConnection*>(this)) {}

ServerConnection::~ServerConnection() {
  *self_ = nullptr;
  close_connection();
}

void ServerConnection::connect(const std::vector<std::string>& keywords,
                               const std::vector<std::string>& values,
                               std::optional<auth::ScramKeys> scram_keys) {
  passthrough_keys_ = scram_keys;
  auto hosts = hosts_needing_resolution(keywords, values);
  if (hosts.empty()) {
    return passthrough_keys_ ? start_passthrough(keywords, values) : start_libpq(keywords, values);
  }
  resolve_hostaddrs(pool_.loop(), std::move(hosts),
                    [self = self_, keys = keywords, vals = values](Result<std::string> hostaddr) mutable {
                      ServerConnection* server = *self;
                      if (server == nullptr) return;
                      if (!hostaddr) return server->connect_failed(hostaddr.error());
                      keys.emplace_back("hostaddr");
                      vals.push_back(std::move(*hostaddr));
                      if (server->passthrough_keys_) return server->start_passthrough(keys, vals);
                      server->start_libpq(keys, vals);
                    });
}

// SCRAM pass-through (README "Authentication"): the login libpq 15 cannot do, with the ClientKey.
void ServerConnection::start_passthrough(const std::vector<std::string>& keywords,
                                         const std::vector<std::string>& values) {
  const auto address = passthrough_address(keywords, values);
  if (!address) return connect_failed(address.error());
  StartupParameters startup = passthrough_startup(keywords, values);
  for (const auto& [name, value] : startup) {
    if (name == "user") passthrough_user_ = value;
  }
  const auto& tls = pool_.server_tls();
  const auto policy = tls ? tls->settings().channel_binding : ServerLogin::ChannelBinding::prefer;
  auto started = PassthroughConnect::start(
      pool_.loop(), *address, tls, ServerLogin(std::move(startup), *passthrough_keys_, {}, policy),
      [this](const std::string& failure) { passthrough_finished(failure); });
  if (!started) return connect_failed(started.error());
  passthrough_ = std::move(*started);
}

void ServerConnection::passthrough_finished(const std::string& failure) {
  if (!failure.empty()) return connect_failed(failure);
  const int fd = passthrough_->release_fd();
  const ServerLogin& login = passthrough_->login();
  backend_pid_ = static_cast<int>(login.process_id());
  // The last value of each wins, as libpq keeps them.
  for (const char* name : kReportedParameters) {
    const std::string* value = nullptr;
    for (const auto& [reported, text] : login.parameters()) {
      if (reported == name) value = &text;
    }
    if (value != nullptr) parameters_.emplace_back(name, *value);
  }
  CancelKey key{.process_id = login.process_id(), .secret = login.secret()};
  key.address_length = sizeof key.address;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&key.address), &key.address_length) == 0)
    cancel_key_ = key;
  std::unique_ptr<net::TlsChannel> tls = passthrough_->release_tls();
  passthrough_.reset();  // its poll handle closes; the fd (and its TLS session) are ours now
  connected(fd, /*owns_fd=*/true, passthrough_user_, std::move(tls));
}

void ServerConnection::start_libpq(const std::vector<std::string>& keywords,
                                   const std::vector<std::string>& values) {
  std::vector<const char*> keys;
  std::vector<const char*> vals;
  for (std::size_t i = 0; i < keywords.size(); ++i) {
    keys.push_back(keywords[i].c_str());
    vals.push_back(values[i].c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), vals.data(), 0);
  if (conn_ == nullptr) return connect_failed("out of memory");
  // The SQLSTATE of a refused login is in libpq's text only when verbose (Pool reads it).
  PQsetErrorVerbosity(conn_, PQERRORS_VERBOSE);
  if (PQstatus(conn_) == CONNECTION_BAD) return connect_failed(PQerrorMessage(conn_));
  advance_connect(PGRES_POLLING_WRITING);  // as libpq documents the first wait
}

// Acts on what PQconnectPoll said, watching whichever socket libpq uses now:
// it may switch sockets while it tries hosts.
void ServerConnection::advance_connect(PostgresPollingStatusType status) {
  if (status == PGRES_POLLING_OK) return connect_ready();
  if (status == PGRES_POLLING_FAILED) return connect_failed(PQerrorMessage(conn_));
  const int fd = PQsocket(conn_);
  if (fd < 0) return connect_failed("libpq has no socket");
  if (fd != connect_fd_) {
    close_connect_poll();
    connect_poll_ = new uv_poll_t{};
    connect_fd_ = fd;
    uv_poll_init_socket(pool_.loop(), connect_poll_, fd);
    connect_poll_->data = this;
  }
  uv_poll_start(connect_poll_, status == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE,
                [](uv_poll_t* handle, int, int) {
                  auto* self = static_cast<ServerConnection*>(handle->data);
                  self->advance_connect(PQconnectPoll(self->conn_));
                });
}

void ServerConnection::close_connect_poll() {
  if (connect_poll_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(connect_poll_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
  connect_poll_ = nullptr;
  connect_fd_ = -1;
}

void ServerConnection::connect_ready() {
  close_connect_poll();
  PQsetnonblocking(conn_, 1);
  backend_pid_ = PQbackendPID(conn_);
  for (const char* name : kReportedParameters) {
    if (const char* value = PQparameterStatus(conn_, name)) parameters_.emplace_back(name, value);
  }
  cancel_key_ = cancel_key_of(conn_);
  // GSSAPI encryption lives inside libpq: sluiced could not read the server's bytes past it.
  if (PQgssEncInUse(conn_) != 0)
    return connect_failed(
        "GSSAPI encryption to the server is not supported: add gssencmode=disable to the conninfo");
  // libpq's TLS session carries the server's bytes from now on; PQfinish ends it.
  std::unique_ptr<net::TlsChannel> tls;
  if (PQsslInUse(conn_) != 0) {
    auto* ssl = static_cast<SSL*>(PQsslStruct(conn_, "OpenSSL"));
    if (ssl == nullptr)
      return connect_failed("libpq's TLS to the server is not OpenSSL's: sluiced cannot carry it");
    tls = net::TlsChannel::borrow(ssl);
  }
  connected(PQsocket(conn_), /*owns_fd=*/false, PQuser(conn_), std::move(tls));
}

void ServerConnection::connected(int fd, bool owns_fd, const std::string& user,
                                 std::unique_ptr<net::TlsChannel> tls) {
  baseline_.emplace(user, pool_.key().settings);
  transaction_status_ = 'I';
  if (!cancel_key_)
    log::warning("server ", id_, ": its cancel key cannot be read; queries on it cannot be cancelled");
  // An owned fd goes with a socket that could not be watched.
  if (!watch_socket(fd, owns_fd)) return connect_failed("cannot watch the server socket");
  if (tls && !socket_->use_tls(std::move(tls)))
    return connect_failed("cannot carry the server's TLS session");
  pool_.connect_succeeded(*this);
}

void ServerConnection::connect_failed(const std::string& reason) {
  std::string message = reason;
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  pool_.connect_failed(*this, message);
}

void ServerConnection::close_connection() {
  *self_ = nullptr;  // a host lookup still under way finds the server gone
  close_connect_poll();
  passthrough_.reset();
  cancel_after_read_.reset();
  // A pass-through server's socket is ours: say goodbye as libpq's PQfinish does.
  if (socket_ && conn_ == nullptr) socket_->write(std::string{'X', 0, 0, 0, 4});
  socket_.reset();  // stops polling before libpq closes the fd
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  user_ = nullptr;
}

int ServerConnection::copy_socket() const {
  return socket_ ? ::fcntl(socket_->fd(), F_DUPFD_CLOEXEC, 0) : -1;
}

void ServerConnection::attach(ServerUser* user) {
  user_ = user;
  if (socket_) socket_->set_reading(true);
}

void ServerConnection::detach() {
  user_ = nullptr;
  // The client's last bytes (a Flush, say, that nothing answers) go before the server is judged.
  if (socket_) socket_->send_queued_now();
  cancel_after_read_.reset();  // a cancel still waiting was its client's: never the next one's
  ledger_.abandon();
  filters_replies_ = tracks_statements_;
}

bool ServerConnection::send_own_query(protocol::Bytes query) {
  ledger_.expect(pending_reply(PendingKind::own_query, 'Q'));
  note_frontend_message('Q');
  filters_replies_ = true;
  return send(query);
}

bool ServerConnection::send_settings_restore(protocol::Bytes query) {
  carries_client_settings_ = true;
  return send_own_query(query);
}

bool ServerConnection::send_backend_state_probe() {
  std::string query;
  protocol::append_query(query, kBackendStateQuery);
  return send_own_query(protocol::as_bytes(query));
}

void ServerConnection::expect_reply(PendingReply entry) { ledger_.expect(std::move(entry)); }

void ServerConnection::expect_forwarded(char request) {
  if (tracks_statements_) ledger_.expect_forwarded(request);
}

void ServerConnection::deliver_ready_replies() {
  const std::string ready = ledger_.take_ready();
  if (!ready.empty() && user_ != nullptr) user_->on_server_data(protocol::as_bytes(ready));
}

bool ServerConnection::send(protocol::Bytes bytes) { return socket_ && socket_->write(bytes); }

bool ServerConnection::has_pending_output() const { return socket_ && socket_->has_pending_output(); }

bool ServerConnection::backed_up() const { return socket_ && socket_->backed_up(); }

bool ServerConnection::watch_socket(int fd, bool owns_fd) {
  socket_ = net::PollSocket::open(pool_.loop(), fd, owns_fd, this);
  if (socket_) socket_->batch_sends();
  return socket_ != nullptr;
}

void ServerConnection::set_reading(bool reading) {
  if (socket_) socket_->set_reading(reading);
}

void ServerConnection::note_frontend_message(char type) {
  switch (type) {
    case 'Q':
    case 'F':
      ++replies_outstanding_;
      break;
    case 'S':
      ++replies_outstanding_;
      unsynced_ = false;
      break;
    case 'P':
    case 'B':
    case 'E':
    case 'D':
    case 'C':
    case 'H':
      unsynced_ = true;
      break;
    case 'c':
    case 'f':
      copy_in_ = false;
      break;
    default:
      break;
  }
}

// Follows one server message; false stops nothing, the scan runs to the end.
bool ServerConnection::track(const protocol::MessageEvent& event) {
  switch (event.type) {
    case 'Z':
      if (replies_outstanding_ > 0) --replies_outstanding_;
      if (replies_outstanding_ == 0) ledger_.forget_rewording();  // a query_timeout's cancel came too late
      transaction_status_ = static_cast<char>(event.first_byte);
      ++requests_answered_;
      if (transaction_status_ == 'I') ++transactions_ended_;
      break;
    case 'G':
      copy_in_ = true;
      break;
    case 'E':
      copy_in_ = false;
      only_session_lock_taken_ = false;  // the lock may be what failed
      if (state_ == ServerState::resetting && step_ == TeardownStep::rolling_back) step_failed_ = true;
      break;
    default:
      break;
  }
  return true;
}

void ServerConnection::on_readable() { read_server(); }

// Out of the common path: only errors come here, those that reach the client as the server sent
// them. The code may lie in a later read (an error split across reads): read_split_error() counts it
// then.
[[gnu::cold]] void ServerConnection::count_error_sent(protocol::Bytes chunk,
                                                      const protocol::MessageEvent& event) {
  const std::size_t end = event.complete() ? event.end : chunk.size();
  const std::uint64_t body_left = event.complete() ? 0 : event.length - 4 - (end - event.body);
  if (error_code_.start(chunk.subspan(event.body, end - event.body), body_left))
    pool_.client_counters().error_sent(error_code_.code());
}

[[gnu::cold]] void ServerConnection::read_split_error(protocol::Bytes chunk) {
  if (error_code_.feed(chunk)) pool_.client_counters().error_sent(error_code_.code());
}

// Those the ledger put in the client's stream itself.
[[gnu::cold]] void ServerConnection::count_made_errors() {
  for (const std::string& code : ledger_.take_made_errors()) pool_.client_counters().error_sent(code);
}

void ServerConnection::read_server() {
  const auto buffer = net::scratch_buffer();
  const ssize_t n = socket_->read(buffer.data(), buffer.size());
  if (n == -EAGAIN) return;
  if (n == 0) return lost("server closed the connection");
  if (n < 0) return lost(std::string("server read failed: ") + std::strerror(static_cast<int>(-n)));

  const protocol::Bytes chunk(buffer.data(), static_cast<std::size_t>(n));
  if (error_code_.pending() > 0) [[unlikely]]
    read_split_error(chunk);
  if (state_ == ServerState::idle) return idle_server_spoke(chunk);
  const bool client_attached = state_ == ServerState::active && user_ != nullptr;
  const bool filtering = filters_replies_ && client_attached;
  if (filtering) ledger_.begin_chunk(chunk);
  const auto result =
      scanner_.scan(chunk, [this, filtering, client_attached, chunk](const protocol::MessageEvent& e) {
        const bool shown = filtering ? ledger_.on_message(e) : client_attached;
        if (e.type == 'E' && shown) count_error_sent(chunk, e);
        return track(e);
      });
  if (result.status != protocol::ScanStatus::ok) return lost("server sent an invalid message length");
  if (filtering && ledger_.has_made_errors()) count_made_errors();
  // A batch that met a stale plan runs again before the client sends anything more.
  if (filtering && ledger_.has_replay()) {
    if (!send(protocol::as_bytes(ledger_.take_replay()))) return lost("could not send to the server");
    note_frontend_message('S');
  }

  if (state_ == ServerState::active && user_ != nullptr) {
    const protocol::Bytes for_client =
        filtering ? ledger_.finish_chunk(scanner_.pending_header_bytes()) : chunk;
    if (!for_client.empty()) user_->on_server_data(for_client);
    if (filtering && user_ != nullptr) {
      if (auto own = ledger_.take_own_replies())
        return user_->on_own_query_done(protocol::read_query_replies(protocol::as_bytes(*own)));
    }
    if (state_ == ServerState::active && user_ != nullptr && !busy() && scanner_.at_boundary()) {
      if (transaction_status_ == 'I') {
        user_->on_server_ready();
      } else {
        user_->on_server_answered();
      }
    }
  } else if (state_ == ServerState::resetting) {
    if (step_ == TeardownStep::resetting)
      reset_replies_.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    teardown_advance();
  }
}

// An idle server may speak on its own: ParameterStatus (PostgreSQL reloaded its
// configuration), a notice, or a FATAL error just before it hangs up. Anything
// else means it is out of step with us.
void ServerConnection::idle_server_spoke(protocol::Bytes chunk) {
  std::string why;
  const auto result = scanner_.scan(chunk, [&](const protocol::MessageEvent& e) {
    if (e.type == 'S' || e.type == 'N') return true;
    if (e.type == 'E' && e.start != protocol::MessageEvent::kEarlier && e.complete()) {
      const auto error = protocol::read_error_fields(chunk.subspan(e.start, e.end - e.start));
      why = error ? "PostgreSQL sent " + error->describe() : "idle server sent a malformed error";
    } else {
      why = std::string("idle server sent unexpected message type '") + e.type + "'";
    }
    return false;
  });
  if (result.status == protocol::ScanStatus::bad_length || result.status == protocol::ScanStatus::too_long) {
    why = "idle server sent an invalid message length";
  }
  if (!why.empty()) lost(why);
}

void ServerConnection::on_drained() {
  if (state_ == ServerState::active && user_ != nullptr) user_->on_server_drained();
}

void ServerConnection::on_backed_up() {
  if (state_ == ServerState::active && user_ != nullptr) user_->on_server_backed_up();
}

void ServerConnection::on_socket_error(int uv_status) {
  lost("server socket: " + net::PollSocket::describe_error(uv_status));
}

void ServerConnection::lost(const std::string& reason) {
  if (state_ == ServerState::active && user_ != nullptr) {
    ServerUser* user = user_;
    user_ = nullptr;
    user->on_server_lost(reason);
  }
  pool_.server_lost(*this, reason);
}

void ServerConnection::begin_teardown(TeardownPlan plan) {
  plan_ = std::move(plan);
  user_ = nullptr;
  step_ = TeardownStep::draining;
  step_failed_ = false;
  reset_done_ = false;
  captured_settings_.reset();
  setting_functions_read_.reset();
  socket_->set_reading(true);
  // Bring the server to a point where it owes exactly one ReadyForQuery per
  // request: abort an open COPY, close an unsynced extended-protocol batch.
  std::string finish;
  if (copy_in_) {
    finish += 'f';
    protocol::append_u32(finish, 4 + 23);
    finish.append("client connection lost", 23);
    copy_in_ = false;
  }
  if (unsynced_) {
    finish += 'S';
    protocol::append_u32(finish, 4);
    ++replies_outstanding_;
    unsynced_ = false;
  }
  if (!finish.empty() && !socket_->write(finish)) return lost("cannot write to server");
  if (plan_.send_cancel && replies_outstanding_ > 0) send_cancel_request();
  teardown_advance();
}

void ServerConnection::teardown_advance() {
  if (state_ != ServerState::resetting) return;
  if (replies_outstanding_ > 0 || cancel_ || !scanner_.at_boundary()) return;
  if (cancel_unproven_) {
    return pool_.teardown_finished(*this, false, "its cancel request's delivery was never confirmed");
  }
  if (step_failed_) {
    return pool_.teardown_finished(*this, false, "server reported an error during teardown");
  }
  if (transaction_status_ != 'I') return send_rollback();
  if ((sends_reset_query() || plan_.read_setting_functions) && !reset_done_) return send_reset();
  if (reset_done_) {
    if (const auto problem = check_reset_replies()) return pool_.teardown_finished(*this, false, *problem);
  }
  pool_.teardown_finished(*this, true, "");
}

// In one write: the client's settings read (when it carries on; its
// statement_timeout lifted first), the reset, and, when the plan asks, the
// same read again, which must find nothing left.
void ServerConnection::send_reset() {
  reset_done_ = true;
  step_ = TeardownStep::resetting;
  reset_replies_.clear();
  std::string queries;
  const std::string read =
      session_settings_query(plan_.capture ? plan_.capture->custom_names : std::vector<std::string>{});
  if (plan_.capture) {
    protocol::append_query(queries, kLiftForReadQuery);
    protocol::append_query(queries, read);
  }
  if (sends_reset_query()) protocol::append_query(queries, plan_.reset_query);
  if (plan_.prove_reset) protocol::append_query(queries, read);
  if (plan_.prove_no_backend_state) protocol::append_query(queries, kBackendStateQuery);
  if (plan_.read_setting_functions) protocol::append_query(queries, kSettingFunctionsQuery);
  replies_outstanding_ += static_cast<int>(reset_reply_count());
  if (!socket_->write(queries)) lost("cannot write to server");
}

std::size_t ServerConnection::reset_reply_count() const {
  return (sends_reset_query() ? 1 : 0) + (plan_.capture ? 2 : 0) + (plan_.prove_reset ? 1 : 0) +
         (plan_.prove_no_backend_state ? 1 : 0) + (plan_.read_setting_functions ? 1 : 0);
}

std::optional<std::string> ServerConnection::check_reset_replies() {
  const auto replies = protocol::read_query_replies(protocol::as_bytes(reset_replies_));
  std::string().swap(reset_replies_);
  if (!replies || replies->size() != reset_reply_count()) return "the reset's replies could not be read";
  // What the pool's servers were found to have at their reset values counts as theirs.
  SessionBaseline baseline = *baseline_;
  if (const auto& learnt = pool_.setting_functions().baseline()) baseline.adopt(*learnt);
  std::size_t next = 0;
  if (plan_.capture) {
    const protocol::QueryReply& lift = (*replies)[next++];
    const protocol::QueryReply& read = (*replies)[next++];
    for (const auto* reply : {&lift, &read}) {
      if (reply->error) return "reading the client's settings failed: " + reply->error->describe();
    }
    captured_settings_ = read_client_settings(lift, read, baseline);
    if (!captured_settings_) return "the client's settings could not be read";
  }
  if (sends_reset_query()) {
    const protocol::QueryReply& reset = (*replies)[next++];
    if (reset.error)
      return (plan_.server_check ? "server_check_query failed: " : "reset failed: ") +
             reset.error->describe();
  }
  if (plan_.prove_reset) {
    const auto left = read_session_settings((*replies)[next++], baseline);
    if (!left) return "the settings after the reset could not be read";
    if (!left->empty()) {
      std::string names;
      for (const auto& setting : *left) names += (names.empty() ? "" : ", ") + setting.name;
      return "settings still set after the reset: " + names;
    }
  }
  if (plan_.prove_no_backend_state) {
    const auto left = read_backend_state((*replies)[next++]);
    if (!left) return "the backend state after the reset could not be read";
    if (!left->empty()) return "still held after the reset: " + *left;
  }
  // A failed read (a short statement_timeout, say) leaves the pool as cautious as before; the
  // server is clean all the same.
  if (plan_.read_setting_functions) setting_functions_read_ = read_setting_functions((*replies)[next]);
  return std::nullopt;
}

void ServerConnection::send_rollback() {
  step_ = TeardownStep::rolling_back;
  std::string query;
  protocol::append_query(query, "ROLLBACK");
  ++replies_outstanding_;
  if (!socket_->write(query)) lost("cannot write to server");
}

void ServerConnection::forward_cancel() {
  if (state_ == ServerState::active && busy()) send_cancel_request();
}

void ServerConnection::forward_cancel_once_read() {
  if (state_ != ServerState::active || !busy()) return;
  if (!socket_->has_pending_output() && net::ReadByPeer::all_read(socket_->fd()))
    return send_cancel_request();
  cancel_after_read_ = net::ReadByPeer::watch(
      pool_.loop(), socket_->fd(), [this] { return socket_->has_pending_output(); }, kCancelReadLimit,
      [this, settled_at = requests_answered_ + static_cast<std::uint64_t>(replies_outstanding_)] {
        cancel_after_read_.reset();
        // As directly, the cancel stops whichever of the written requests runs now: an earlier,
        // quick one may have been answered already. Once the last is answered, nothing is left
        // to cancel (unless extended-protocol messages without a Sync still run).
        if (requests_answered_ < settled_at || replies_outstanding_ == 0) forward_cancel();
      });
}

// The error goes through the ledger to be reworded. Where replies are not filtered yet, they are from
// here on, unless a message's header is half forwarded already (the ledger could not hold it back):
// then the error keeps PostgreSQL's words.
void ServerConnection::cancel_for_query_timeout(std::string message, std::string detail) {
  if (filters_replies_ || scanner_.pending_header_bytes() == 0) {
    filters_replies_ = true;
    ledger_.reword_next_cancel(std::move(message), std::move(detail));
  }
  forward_cancel();
}

// One cancel at a time: a second would add nothing, the first one's delivery is awaited.
void ServerConnection::send_cancel_request() {
  if (cancel_) return;
  if (!cancel_key_) return log::warning("server ", id_, ": cancel not sent: its cancel key is unknown");
  auto request = CancelRequest::start(
      pool_.loop(), *cancel_key_,
      [this](CancelResult result, const std::string& detail) { cancel_finished(result, detail); });
  if (!request) return log::warning("server ", id_, ": cancel not sent: ", request.error());
  cancel_ = std::move(*request);
}

void ServerConnection::cancel_finished(CancelResult result, const std::string& detail) {
  cancel_.reset();  // safe inside its callback: CancelRequest touches nothing after it
  if (result == CancelResult::unknown) {
    cancel_unproven_ = true;
    log::warning("server ", id_, ": cancel request's delivery not confirmed (", detail,
                 "); it will be closed");
  } else if (result == CancelResult::not_sent) {
    log::warning("server ", id_, ": cancel request not sent: ", detail);
  }
  teardown_advance();
}

}  // namespace sluice::pool
