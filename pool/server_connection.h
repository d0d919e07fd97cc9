// One connection to PostgreSQL: opened by libpq without blocking the loop,
// then driven as raw protocol bytes. It tracks the server's real state
// (transaction status, replies outstanding, COPY) so that a scope's end can
// pick its outcome, and it runs the teardown steps of that outcome.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "auth/scram_client.h"
#include "net/poll_socket.h"
#include "net/read_by_peer.h"
#include "pool/cancel_request.h"
#include "pool/passthrough_connect.h"
#include "pool/prepared_statements.h"
#include "pool/reply_ledger.h"
#include "pool/scope_outcome.h"
#include "pool/session_settings.h"
#include "pool/setting_functions.h"
#include "protocol/error_code_reader.h"
#include "protocol/message_scanner.h"
#include "protocol/query_replies.h"

namespace sluice::pool {

class Pool;

// The client session leasing a server hears from it through this.
class ServerUser {
 public:
  virtual void on_server_data(protocol::Bytes bytes) = 0;
  virtual void on_server_ready() = 0;  // ReadyForQuery 'I' with nothing outstanding
  // Everything the client sent is answered inside a transaction (ReadyForQuery 'T' or 'E').
  virtual void on_server_answered() = 0;
  virtual void on_server_lost(const std::string& reason) = 0;
  // All that was written to the server is in the kernel: a send it refused in part, or one the
  // loop turn batched.
  virtual void on_server_drained() = 0;
  // The kernel took only part of a batched send (net/send_batch.h): the server reads slower than
  // the client writes; on_server_drained follows once the rest is in the kernel.
  virtual void on_server_backed_up() = 0;
  // sluiced's own query, sent alone for the client (its settings' restore, a
  // look at its backend state), has been answered: one reply per Query, nullopt
  // when they cannot be read. Nothing the client sent behind it has run.
  virtual void on_own_query_done(std::optional<std::vector<protocol::QueryReply>> replies) = 0;

 protected:
  ~ServerUser() = default;
};

enum class ServerState {
  connecting,  // libpq handshake in progress
  idle,        // ReadyForQuery 'I', nothing pending (and reset): may be leased
  active,      // leased to a client by a scope
  resetting,   // scope ended: cancel / ROLLBACK / reset query under way
  closing,     // closed; freed when the loop next turns
};
std::string_view state_name(ServerState state);

using ServerParameters = std::vector<std::pair<std::string, std::string>>;

// A session-mode client's server connection on its way to a new process in a live upgrade: what the
// new process needs beside the socket (a logged-in backend between transactions).
struct MovedServer {
  std::uint32_t backend_pid = 0;
  std::uint32_t cancel_secret = 0;
  ServerParameters parameters;
  std::string login_user;
  // A pinned transaction-mode client's server: the statement cache's generation (the backend holds
  // statements named up to it) and what its release must know.
  std::uint32_t statement_generation = 0;
  bool holds_backend_state = false;
  bool carries_client_settings = false;
  bool session_changed = false;
  bool functions_changed = false;
  bool library_loaded = false;
  bool operator==(const MovedServer&) const = default;
};

// What teardown must do beyond draining outstanding replies.
struct TeardownPlan {
  ScopeOutcome outcome = ScopeOutcome::clean;
  bool send_cancel = false;  // a query may be running: CancelRequest first
  // Run once at 'I' (empty: none).
  std::string reset_query;
  // Before the reset: the client's settings are read and handed to it.
  std::shared_ptr<SettingsCapture> capture;
  // After the reset, read again: the server must be back at its pool's
  // baseline settings, role and session authorization, or it is closed.
  bool prove_reset = false;
  // After the reset, ask what backend state is left: it must be none.
  bool prove_no_backend_state = false;
  // Last, which functions may change settings (kSettingFunctionsQuery), for the pool.
  bool read_setting_functions = false;
  // No client's scope ended: the pool's own errand on an idle server, not recorded as a release.
  bool upkeep = false;
  // Upkeep: server_check_query, as reset_query; an empty one is sent as an empty Query.
  bool server_check = false;
  // For telemetry and logs.
  std::chrono::steady_clock::time_point started_at{};
  std::uint64_t client_id = 0;
  std::string reason;
};

class ServerConnection final : net::PollSocket::Handler {
 public:
  using Clock = std::chrono::steady_clock;

  ServerConnection(Pool& pool, std::uint64_t id);
  ~ServerConnection();
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;

  // Starts libpq's non-blocking connect, or with `scram_keys` sluiced's own SCRAM pass-through
  // login; the pool hears back either way.
  void connect(const std::vector<std::string>& keywords, const std::vector<std::string>& values,
               std::optional<auth::ScramKeys> scram_keys = std::nullopt);
  // The keys it logs in with through SCRAM pass-through; nullopt on libpq's login.
  [[nodiscard]] const std::optional<auth::ScramKeys>& passthrough_keys() const { return passthrough_keys_; }

  // While leased.
  void attach(ServerUser* user);
  void detach();
  bool send(protocol::Bytes bytes);
  void note_frontend_message(char type);
  // Statement tracking (transaction mode): what this server holds, and the
  // replies it owes for what the client's StatementRouter sent.
  [[nodiscard]] ServerStatementCache& statements() { return statements_; }
  // Fixed when the server is opened: a reload that changes the pool mode or
  // max_prepared_statements applies to servers opened after it.
  [[nodiscard]] bool tracks_statements() const { return tracks_statements_; }
  [[nodiscard]] std::size_t prepared_statement_count() const { return statements_.size(); }
  void expect_reply(PendingReply entry);
  void expect_forwarded(char request);
  void expect_bind(StatementPtr statement) { ledger_.expect_bind(std::move(statement)); }
  // The batch being sent, kept in case a stale plan makes it run again.
  [[nodiscard]] BatchReplay& batch_replay() { return ledger_.batch_replay(); }
  // Replies sluiced answered with nothing owed before them go to the client now.
  void deliver_ready_replies();
  // Written and not yet in the kernel: queued with the loop turn's other sends, or refused by it.
  [[nodiscard]] bool has_pending_output() const;
  // The kernel refused a part: the server reads slower than it is written to.
  [[nodiscard]] bool backed_up() const;
  void set_reading(bool reading);

  // The server's state as its messages tell it.
  [[nodiscard]] char transaction_status() const { return transaction_status_; }
  // ReadyForQuery messages seen, and those of them that said 'I': a pipeline's requests and
  // transactions end while more of it is outstanding (query_timeout_ms, transaction_timeout_ms).
  [[nodiscard]] std::uint64_t requests_answered() const { return requests_answered_; }
  [[nodiscard]] std::uint64_t transactions_ended() const { return transactions_ended_; }
  // A reply is outstanding: a query runs, results stream, or COPY is open.
  [[nodiscard]] bool busy() const { return replies_outstanding_ > 0 || unsynced_ || copy_in_; }
  [[nodiscard]] bool idle_clean() const { return !busy() && transaction_status_ == 'I'; }
  // Busy only with sluiced's own query (a settings restore, a backend state probe): it has only to
  // be waited for, never cancelled.
  [[nodiscard]] bool busy_with_own_query() const {
    return replies_outstanding_ == 1 && !unsynced_ && !copy_in_ && ledger_.owes_own_query_only();
  }

  // Runs the plan (state resetting); reports to Pool::teardown_finished.
  void begin_teardown(TeardownPlan plan);
  // Sends the client's cancel for whatever runs now (without blocking the loop).
  void forward_cancel();
  // The client's cancel for the bytes just written (a statement that waited for this server):
  // sent once PostgreSQL has read them, for a cancel that reaches a backend still reading its
  // input is ignored; not sent if every request written is answered first.
  void forward_cancel_once_read();
  // query_timeout_ms: the cancel, and the error it brings worded as `message` and `detail` (README
  // "Limits against PgBouncer's names").
  void cancel_for_query_timeout(std::string message, std::string detail);
  // A cancel is on its way, or went out without proof of delivery: until it is
  // settled this server must not run another query (of anyone's).
  [[nodiscard]] bool cancel_pending() const { return cancel_ != nullptr || cancel_unproven_; }
  // The client ran something that may change session state (a SET, say): the
  // server is reset before it goes back to the pool.
  void note_session_change() { session_changed_ = true; }
  [[nodiscard]] bool session_changed() const { return session_changed_; }
  // The client's SQL made, changed or dropped functions or triggers: the pool reads them again.
  void note_functions_changed() { functions_changed_ = true; }
  [[nodiscard]] bool functions_changed() const { return functions_changed_; }
  // Transaction mode: the client's session settings go out ahead of its
  // messages, alone (the caller holds the client's bytes until
  // on_own_query_done). `query` is a Query message.
  bool send_settings_restore(protocol::Bytes query);
  // Its SQL may have made or dropped state that lives in the backend: at the
  // end of the transaction the server is asked what is left.
  void note_backend_state_touched() {
    backend_state_touched_ = true;
    only_session_lock_taken_ = false;
  }
  [[nodiscard]] bool backend_state_touched() const { return backend_state_touched_; }
  // Its SQL took a session advisory lock (SqlBackendEffect::takes_session_lock). While nothing
  // else of the kind has run, nor has any error come, since the server was last asked, the lock
  // is held: the client keeps its server without asking.
  void note_session_lock_taken() {
    only_session_lock_taken_ = !backend_state_touched_ || only_session_lock_taken_;
    backend_state_touched_ = true;
  }
  [[nodiscard]] bool session_lock_surely_held() const { return only_session_lock_taken_; }
  // Asks it (kBackendStateQuery), alone, as send_settings_restore.
  bool send_backend_state_probe();
  // sluiced's own question on a server it leased for itself (auth.query): `query` is a Query
  // message, answered through on_own_query_done.
  bool send_lookup_query(protocol::Bytes query) { return send_own_query(query); }
  // The server's answer: its client keeps it for state it holds, or not.
  void note_holds_backend_state(bool holds) {
    holds_backend_state_ = holds;
    backend_state_touched_ = false;
    only_session_lock_taken_ = false;
  }
  // It holds some, or may (the client left before the server was asked): the
  // release wipes the session (DISCARD ALL) and proves it empty.
  [[nodiscard]] bool may_hold_backend_state() const { return holds_backend_state_ || backend_state_touched_; }
  // LOAD ran: no reset undoes it, so the server is closed at its release.
  void note_library_loaded() { library_loaded_ = true; }
  [[nodiscard]] bool library_loaded() const { return library_loaded_; }
  // The server holds a client's settings: reset before it goes back to the pool.
  [[nodiscard]] bool carries_client_settings() const { return carries_client_settings_; }
  // The client carries on: its release reads its settings for it.
  void capture_settings_for(std::shared_ptr<SettingsCapture> capture) { capture_ = std::move(capture); }
  // Stops I/O and closes the libpq connection now (sends Terminate).
  void close_connection();
  // A close-on-exec duplicate of its socket (-1 when it has none or dup fails): made before
  // close_connection, it outlives the connection (pool/departing_backend.h).
  [[nodiscard]] int copy_socket() const;

  // Live upgrade (server_handover.cpp). It can move to another process: a plain socket (libpq's TLS
  // or GSS state cannot travel) whose cancel key is known.
  [[nodiscard]] bool can_travel() const;
  // Between transactions, with nothing in flight either way.
  [[nodiscard]] bool at_rest() const;
  [[nodiscard]] MovedServer moved() const;

  [[nodiscard]] std::uint64_t id() const { return id_; }
  [[nodiscard]] int backend_pid() const { return backend_pid_; }
  [[nodiscard]] ServerState state() const { return state_; }
  [[nodiscard]] Clock::time_point created_at() const { return created_at_; }
  [[nodiscard]] Clock::time_point state_since() const { return state_since_; }
  [[nodiscard]] const ServerParameters& parameters() const { return parameters_; }
  [[nodiscard]] const TeardownPlan& teardown_plan() const { return plan_; }

 private:
  friend class Pool;  // owns state changes and list membership
  using Position = std::list<std::unique_ptr<ServerConnection>>::iterator;

  enum class TeardownStep { draining, rolling_back, resetting };

  // net::PollSocket::Handler
  void on_readable() override;
  void on_drained() override;
  void on_backed_up() override;
  void on_socket_error(int uv_status) override;
  // Watches `fd` with a socket whose small writes go out with the loop turn's other sends (the
  // turn's queries to servers and replies to clients leave in one system call; a TLS session's
  // writes go through OpenSSL, at once); false when it cannot be watched.
  bool watch_socket(int fd, bool owns_fd);

  // Live upgrade: a duplicate of its socket for the new process, this process's hold on the socket
  // given up without a goodbye (the backend's session goes on there); -1 when that cannot be done,
  // and then nothing has changed.
  int release_for_handover();
  // The new process: `fd` is a logged-in backend between transactions, as `moved` describes it.
  bool adopt(int fd, const MovedServer& moved);

  void start_libpq(const std::vector<std::string>& keywords, const std::vector<std::string>& values);
  void start_passthrough(const std::vector<std::string>& keywords, const std::vector<std::string>& values);
  void passthrough_finished(const std::string& failure);
  // Logged in, either way: what the rest of the pool relies on, then the pool hears.
  // `tls`: the session the login established on `fd`, if any; the server's bytes pass through it.
  void connected(int fd, bool owns_fd, const std::string& user,
                 std::unique_ptr<net::TlsChannel> tls = nullptr);
  void advance_connect(PostgresPollingStatusType status);
  void close_connect_poll();
  void connect_ready();
  void connect_failed(const std::string& reason);
  void read_server();
  void lost(const std::string& reason);
  bool track(const protocol::MessageEvent& event);
  // An ErrorResponse on its way to the client: counted by SQLSTATE class (README "Metrics").
  void count_error_sent(protocol::Bytes chunk, const protocol::MessageEvent& event);
  void read_split_error(protocol::Bytes chunk);
  void count_made_errors();
  void teardown_advance();
  void send_rollback();
  void send_cancel_request();
  void cancel_finished(CancelResult result, const std::string& detail);
  void idle_server_spoke(protocol::Bytes chunk);
  bool send_own_query(protocol::Bytes query);
  void send_reset();
  // After the reset's replies: why the server cannot go back (nullopt: it can).
  std::optional<std::string> check_reset_replies();
  [[nodiscard]] std::size_t reset_reply_count() const;
  [[nodiscard]] bool sends_reset_query() const { return !plan_.reset_query.empty() || plan_.server_check; }

  // First what every relayed reply and every clean release reads or writes, on as few cache lines
  // as it fits (with 50 clients or more the connection's lines are cold by its next reply).
  Pool& pool_;
  ServerUser* user_ = nullptr;
  net::PollSocket::Ptr socket_;
  ServerState state_ = ServerState::connecting;
  int replies_outstanding_ = 0;  // Query / Sync / FunctionCall sent, ReadyForQuery not yet seen
  char transaction_status_ = 'I';
  bool unsynced_ = false;           // extended-protocol messages sent since the last Sync
  bool copy_in_ = false;            // server waits for CopyData from the client
  bool tracks_statements_ = false;  // transaction mode with max_prepared_statements > 0
  bool filters_replies_ = false;    // tracks statements, or restored settings this scope
  bool cancel_unproven_ = false;    // sent, delivery never confirmed: discard at release
  bool session_changed_ = false;
  bool functions_changed_ = false;
  bool carries_client_settings_ = false;
  bool backend_state_touched_ = false;
  bool only_session_lock_taken_ = false;
  bool holds_backend_state_ = false;
  bool library_loaded_ = false;
  std::uint64_t requests_answered_ = 0;
  std::uint64_t transactions_ended_ = 0;
  std::unique_ptr<CancelRequest> cancel_;               // in flight
  std::unique_ptr<net::ReadByPeer> cancel_after_read_;  // forward_cancel_once_read(), until PostgreSQL reads
  protocol::MessageScanner scanner_;
  Position position_{};
  Clock::time_point state_since_;
  std::uint64_t target_generation_ = 0;       // the pool's conninfo it was opened with (Pool::update)
  std::shared_ptr<SettingsCapture> capture_;  // asked for this scope's release
  protocol::ErrorCodeReader error_code_;      // an error sent to the client, its code still to come
  ServerStatementCache statements_;
  ReplyLedger ledger_{statements_};

  std::uint64_t id_;
  Clock::time_point created_at_;
  // Async work (host lookup, cancel) checks this before touching `this`.
  std::shared_ptr<ServerConnection*> self_;

  PGconn* conn_ = nullptr;
  std::unique_ptr<PassthroughConnect> passthrough_;  // SCRAM pass-through's login, while it runs
  std::optional<auth::ScramKeys> passthrough_keys_;
  std::string passthrough_user_;
  uv_poll_t* connect_poll_ = nullptr;
  int connect_fd_ = -1;
  int backend_pid_ = 0;
  ServerParameters parameters_;
  std::optional<SessionBaseline> baseline_;  // read once connected

  TeardownPlan plan_;
  TeardownStep step_ = TeardownStep::draining;
  std::optional<CancelKey> cancel_key_;  // read once connected
  bool step_failed_ = false;
  bool reset_done_ = false;
  std::string reset_replies_;  // everything the server answered the reset
  std::optional<SessionSettings> captured_settings_;
  std::optional<Result<SettingFunctions>> setting_functions_read_;  // none until its reply is read
};

}  // namespace sluice::pool
