// One client connection: the v3 front end (startup, authentication, the
// welcome), then forwarding between the client and the server its scope
// holds. Transaction mode takes a scope per transaction, session mode one
// for the whole login, or until the state that keeps a client on its server is gone.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/listener.h"
#include "frontend/client_auth.h"
#include "frontend/moved_client.h"
#include "frontend/secret_lookup.h"
#include "frontend/statement_router.h"
#include "metrics/request_timer.h"
#include "net/poll_socket.h"
#include "pool/pool.h"
#include "protocol/message_scanner.h"
#include "protocol/startup.h"
#include "protocol/startup_settings.h"

namespace sluice::daemon {
class Worker;
}  // namespace sluice::daemon

namespace sluice::frontend {

using daemon::Transport;
using daemon::Worker;

enum class ClientState {
  handshake,  // reading the startup packet
  login,      // authenticated, waiting for a server's parameters to welcome it
  idle,       // logged in, holds no server
  waiting,    // queued for a server
  active,     // holds a scope
  closing,
};
std::string_view client_state_name(ClientState state);

class ClientSession final : net::PollSocket::Handler,
                            pool::ScopeWaiter,
                            pool::ServerUser,
                            pool::SettingsReceiver {
 public:
  using Clock = std::chrono::steady_clock;

  ClientSession(Worker& worker, std::uint64_t id, int fd, Transport transport);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Sends a FATAL ErrorResponse (when the protocol allows one) and closes.
  void fail(const char* sqlstate, const std::string& message, std::string_view detail = {});
  void close(std::string_view reason);
  // A CancelRequest carrying this client's key: cancel what its server runs.
  void forward_cancel();
  // Drain started: leave now if between transactions, else at the next boundary.
  void drain();
  // Drain deadline: end the scope (cancel / rollback) and close; true when a scope was cut.
  bool force_close_for_drain();
  // A live upgrade's old process: between transactions with nothing pending either way, it moves
  // to the new process now (client_session_move.cpp); otherwise at its boundary.
  void move_if_at_rest();
  // The new process of a live upgrade: goes on with the session the old process handed over, as
  // logged in and between transactions, without a word to the client (client_session_move.cpp).
  // `server_fd`: the socket of the server a session-mode client brought along (else -1).
  // False: declined, closed without a word (state this config cannot carry: named prepared
  // statements where none are tracked), for the old process to drain; true: this process has it
  // (serves it, or ended it with its own error).
  bool resume(MovedClient moved, int server_fd);
  // Janitor: login_timeout, idle_transaction_timeout_ms, client_idle_timeout_s, query_timeout_ms,
  // transaction_timeout_ms.
  void check_timeouts(std::uint64_t now_ms);

  [[nodiscard]] std::uint64_t id() const { return id_; }
  [[nodiscard]] ClientState state() const { return state_; }
  [[nodiscard]] Clock::time_point connected_at() const { return connected_at_; }
  [[nodiscard]] Clock::time_point state_since() const { return state_since_; }
  [[nodiscard]] const std::string& user() const { return user_; }
  [[nodiscard]] const std::string& database() const { return database_; }
  [[nodiscard]] pool::Pool* pool() const { return pool_; }
  [[nodiscard]] std::uint32_t cancel_process_id() const { return cancel_pid_; }
  [[nodiscard]] std::uint32_t cancel_secret() const { return cancel_secret_; }
  // Named statements it has prepared (transaction mode tracks them).
  [[nodiscard]] std::size_t prepared_statement_count() const {
    return router_ ? router_->statement_count() : 0;
  }
  // Transaction mode: what its SETs left in force beyond its startup settings.
  [[nodiscard]] const pool::SessionSettings& session_settings() const { return settings_; }
  // Transaction mode: why it keeps its server between transactions ("temporary objects, LISTEN"),
  // empty when it does not.
  [[nodiscard]] const std::string& pinned_because() const { return pin_reason_; }
  [[nodiscard]] Transport transport() const { return transport_; }
  // Its TLS, for authentication (version, tls-server-end-point, the certificate's CN) and
  // reports; nullptr in plain text.
  [[nodiscard]] const net::TlsChannel* tls() const { return socket_ ? socket_->tls() : nullptr; }
  // How it logged in (hba: the method its rule named); nullopt until it has.
  [[nodiscard]] std::optional<config::AuthType> auth_method() const { return auth_method_; }

  std::list<std::unique_ptr<ClientSession>>::iterator position;  // in its worker's client list

 private:
  // net::PollSocket::Handler
  void on_readable() override;
  void on_drained() override;
  void on_backed_up() override;
  void on_socket_error(int uv_status) override;
  // pool::ScopeWaiter
  void on_scope_granted(pool::Scope scope) override;
  void on_scope_failed(const char* sqlstate, const std::string& message) override;
  // pool::ServerUser
  void on_server_data(protocol::Bytes bytes) override;
  void on_server_ready() override;
  void on_server_answered() override;
  void on_server_lost(const std::string& reason) override;
  void on_server_drained() override;
  void on_server_backed_up() override;
  void on_own_query_done(std::optional<std::vector<protocol::QueryReply>> replies) override;
  // pool::SettingsReceiver
  void on_settings_captured(std::optional<pool::SessionSettings> settings,
                            const std::string& why_not) override;

  void set_state(ClientState state);
  // Its settings, and the Query that puts them on a server.
  void set_settings(pool::SessionSettings settings);
  [[nodiscard]] bool at_transaction_boundary() const;
  void leave_for_drain();
  // Live upgrade, the old process's side (client_session_move.cpp). Whether this client can move
  // to the new process at all: plain text, transaction mode, nothing that keeps it on its server.
  [[nodiscard]] bool movable() const;
  // Draining, it stays until its boundary to move instead of leaving.
  [[nodiscard]] bool stays_to_move() const;
  // Draining, and it leaves at its boundary (it cannot move).
  [[nodiscard]] bool leaves_at_boundary() const;
  [[nodiscard]] bool at_rest() const;
  // It holds its server between transactions: session mode, or pinned.
  [[nodiscard]] bool keeps_server() const { return session_mode_ || !pin_reason_.empty(); }
  void move_to_new_process();
  void read_startup();
  void handle_startup(const protocol::StartupPacket& packet);
  // The client's answers to the password challenge, framed as v3 messages.
  void read_auth_messages();
  void auth_stepped(const auth::AuthStep& step, std::optional<config::AuthType> method);
  [[nodiscard]] AuthClient auth_client() const;
  // A moved client, checked against this process's config as a fresh login would be
  // (client_session_move.cpp): the refusal it would hear, or nullopt.
  [[nodiscard]] std::optional<auth::AuthError> refusal_under_this_config() const;
  void begin_auth(ClientAuth::Start start);
  void look_up_secret(config::AuthType method);
  void secret_found(config::AuthType method, const LookedUpSecret& found);
  // Authenticated: find the pool and welcome the client.
  void log_in();
  void send_welcome();
  void read_client();
  void ask_for_scope();
  void hold(protocol::Bytes chunk);
  void forward_to_server(protocol::Bytes chunk);
  void server_write_failed();
  // After a transaction: its server goes back to the pool, its settings read on the way.
  void release_server();
  void settings_restored(const std::optional<std::vector<protocol::QueryReply>>& replies);
  // The server said what backend state the transaction left: keep the server, or let it go.
  void backend_state_read(const std::optional<std::vector<protocol::QueryReply>>& replies);
  void keep_backend_state(std::string reason);
  void forward_held();
  void answer_cancelled_while_waiting();
  // Its server had nothing of its to run: a new request, and a new transaction when none is open
  // (query_timeout_ms and transaction_timeout_ms count from these). Once per read: inline.
  void note_request_start(std::uint64_t now_ms) {
    request_started_ms_ = now_ms;
    query_timeout_fired_ = false;
    if (!scope_ || scope_.server().transaction_status() == 'I') transaction_started_ms_ = now_ms;
  }
  // What the server finished since the limits last looked (a pipeline's requests end while more of
  // it runs): the clocks restart, no earlier than that look.
  void note_server_progress(const pool::ServerConnection& server, std::uint64_t now_ms);
  // query_timeout_ms and transaction_timeout_ms (query_limits.cpp); true when the client was ended.
  bool check_running_limits(std::uint64_t now_ms);
  // Transport security (client_session_tls.cpp).
  [[nodiscard]] bool offers_tls() const;
  void answer_encryption_request(protocol::StartupKind kind);
  // True when read_startup should wait: a ClientHello's first byte is not there yet, or the
  // session closed.
  bool start_direct_tls();
  [[nodiscard]] std::string describe_read_failure(ssize_t result) const;

  // First what each of its transactions reads or writes, on as few cache lines as it fits (with
  // many clients a session's lines are cold by its next query); the handshake's and the rarer after.
  // sluiced's own query that runs on its server, alone: the client's bytes are held until it is done.
  enum class OwnQuery { none, settings_restore, backend_state_probe };
  Worker& worker_;
  ClientState state_ = ClientState::handshake;
  OwnQuery own_query_ = OwnQuery::none;
  bool session_mode_ = false;
  bool cancel_held_ = false;          // a CancelRequest came while its statement was held
  bool query_timeout_fired_ = false;  // the running request's cancel was sent
  Clock::time_point state_since_;
  net::PollSocket::Ptr socket_;
  pool::Pool* pool_ = nullptr;
  protocol::MessageScanner scanner_;         // client-to-server direction
  std::unique_ptr<StatementRouter> router_;  // on servers that track statements (transaction mode)
  pool::Scope scope_;
  std::optional<pool::Pool::WaitTicket> wait_ticket_;
  static constexpr std::size_t kMaxHeldBytes = std::size_t{64} * 1024;
  // A held buffer up to this size is kept for the next wait (a query or two; an idle client that
  // never waited keeps none).
  static constexpr std::size_t kKeptHeldCapacity = 256;
  std::string held_;        // bytes read before a server was ours, or behind sluiced's own query
  std::string pin_reason_;  // see pinned_because()
  // Its last transaction may have changed its settings: until its server's
  // release has read them, it does not ask for another.
  std::shared_ptr<pool::SettingsCapture> capture_;
  std::uint64_t last_activity_ms_ = 0;        // loop time of the last byte either way
  std::uint64_t request_started_ms_ = 0;      // its first bytes since its server last had nothing to run
  std::uint64_t transaction_started_ms_ = 0;  // ... since its server was last outside a transaction
  metrics::RequestTimer request_timer_;
  struct ServerProgress {
    const pool::ServerConnection* server = nullptr;
    std::uint64_t requests_answered = 0;
    std::uint64_t transactions_ended = 0;
    std::uint64_t seen_at_ms = 0;
  };
  ServerProgress limits_seen_;  // as the last look of query_limits.cpp found it
  pool::SessionSettings settings_;
  std::string settings_restore_;  // the Query that puts settings_ on a server

  std::uint64_t id_;
  Transport transport_;
  Clock::time_point connected_at_;
  std::string startup_buffer_;  // only during the handshake
  // Only while a password exchange runs: the exchange, and the startup settings waiting for it.
  std::unique_ptr<ClientAuth> auth_;
  SecretLookup::RequestPtr secret_request_;  // auth.query in flight
  bool looking_up_secret_ = false;
  protocol::StartupSettings startup_settings_;
  std::string user_;
  std::string database_;
  std::uint32_t cancel_pid_ = 0;
  std::uint32_t cancel_secret_ = 0;
  bool ssl_request_seen_ = false;  // or a direct ClientHello
  bool gss_request_seen_ = false;
  std::optional<config::AuthType> auth_method_;
};

}  // namespace sluice::frontend
