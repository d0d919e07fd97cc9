// One pool per (database, user): its server connections, one list per state,
// and a FIFO queue of clients waiting for one. Every state change goes
// through transition(); every close through close_server(), with a reason.
#pragma once

#include <uv.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "metrics/client_counters.h"
#include "metrics/pool_metrics.h"
#include "net/deferred_deleter.h"
#include "pool/connection_counts.h"
#include "pool/departing_backend.h"
#include "pool/prepared_statements.h"
#include "pool/scope.h"
#include "pool/scram_key_store.h"
#include "pool/server_budget.h"
#include "pool/server_connection.h"
#include "pool/setting_functions.h"
#include "pool/teardown_stats.h"
#include "protocol/startup_settings.h"

namespace sluice::pool {

// A client waiting for a server hears back through this, exactly once.
class ScopeWaiter {
 public:
  virtual void on_scope_granted(Scope scope) = 0;
  virtual void on_scope_failed(const char* sqlstate, const std::string& message) = 0;

 protected:
  ~ScopeWaiter() = default;
};

// What pools share: the loop, deferred deletion, telemetry, global settings.
struct PoolContext {
  uv_loop_t* loop = nullptr;
  net::DeferredDeleter* deleter = nullptr;
  TeardownStats* stats = nullptr;
  metrics::ClientCounters* client_counters = nullptr;
  int message_max = 0;
  int teardown_max_ms = 0;
  std::atomic<std::uint64_t>* server_ids = nullptr;  // shared by every worker: ids are daemon-wide
  ConnectionCounts* counts = nullptr;                // shared by every worker: database and user limits
  ScramKeyStore* scram_keys = nullptr;               // shared by every worker: SCRAM pass-through's keys
  std::vector<Pool*> pools;                          // this worker's: a place given back is taken at once
};

// Clients share servers only when their startup settings are the same: the
// servers are opened with them, so each session starts as a direct one would
// (RESET returns to them, ParameterStatus reports them, a refusal is PostgreSQL's).
struct PoolKey {
  std::string database;
  std::string user;
  protocol::StartupSettings settings;
  [[nodiscard]] std::string name() const { return database + "/" + user; }
};

// The pool a login asks for, its names not copied: a login looks its pool up (PoolKeyOrder) and
// copies them only for a pool it creates.
struct PoolKeyRef {
  const std::string& database;
  const std::string& user;
  const protocol::StartupSettings& settings;
};

struct PoolKeyOrder {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return fields(a) < fields(b);
  }
  // The same key: one test of equality, cheaper than the two orderings a lookup makes.
  template <class A, class B>
  static bool same(const A& a, const B& b) {
    return fields(a) == fields(b);
  }

 private:
  template <class Key>
  static auto fields(const Key& key) {
    return std::tie(key.database, key.user, key.settings);
  }
};

// A user the conninfo names (PgBouncer's forced user), empty when the client's is used.
std::string conninfo_user(const std::string& conninfo);

class Pool final : DepartingBackend::Owner {
 public:
  using Clock = std::chrono::steady_clock;
  struct Waiter {
    ScopeWaiter* waiter;
    std::uint64_t client_id;
    Clock::time_point since;
  };
  using WaitTicket = std::list<Waiter>::iterator;
  // The limits at work (README "Limits against PgBouncer's names"), for `sluicectl pools`.
  struct LimitCounts {
    // Servers above pool_size, for a client that waited reserve_pool_timeout_ms.
    std::uint64_t reserve_servers_opened = 0;
    // Times a server for waiting clients was not opened: max_db/max_user_connections reached.
    std::uint64_t limit_reached = 0;
    // Idle servers closed so that another pool's waiting clients get a place.
    std::uint64_t places_given_back = 0;
    // server_check_query runs on servers idle server_check_delay_s, and those that failed (closed;
    // their client got another server).
    std::uint64_t checks_run = 0;
    std::uint64_t checks_failed = 0;
    std::uint64_t query_timeouts = 0;        // requests cancelled at query_timeout_ms
    std::uint64_t transaction_timeouts = 0;  // clients ended at transaction_timeout_ms
  };

  // `budget` is shared with the pools of the same (database, user) and other startup settings.
  Pool(PoolContext& context, PoolKey key, config::DatabaseConfig database,
       std::shared_ptr<ServerBudget> budget);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Grants at once (the callback runs before acquire returns and no ticket is
  // given) or queues the waiter; a queued waiter may cancel with its ticket.
  std::optional<WaitTicket> acquire(ScopeWaiter& waiter, std::uint64_t client_id);
  void cancel_wait(WaitTicket ticket) { retire_waiter(ticket); }
  // Live upgrade (server_handover.cpp), the old process: the scope's server leaves the pool for the
  // new process with its client, without a reset or a goodbye; a duplicate of its socket, or -1
  // when it cannot go (nothing has changed then). Scope::hand_over calls it.
  int hand_over_server(ServerConnection& server, std::uint64_t client_id);
  // The new process: the server a session-mode client brought along, leased to it at once (an
  // empty scope when it cannot be watched). It counts against the limits even above them: the
  // backend exists already.
  Scope adopt_server(int fd, const MovedServer& moved, std::uint64_t client_id);

  // The ParameterStatus messages of a welcome from this pool, encoded once (every login in
  // transaction mode sends them): known once a server of the current conninfo connected.
  [[nodiscard]] const std::string* parameter_statuses() const {
    return parameter_statuses_ ? &*parameter_statuses_ : nullptr;
  }

  // Timeouts: waiters, connects, teardown deadline, idle and old servers.
  void tick(Clock::time_point now);
  // Reload: new settings for the next acquire and release.
  void update(config::DatabaseConfig database);
  // Closes idle servers now (drain, shutdown).
  void close_idle(std::string_view reason);
  // Paused: no scope is granted and waits do not time out; resuming serves the queue.
  void set_paused(bool paused);
  // Draining: min_pool_size opens no more servers.
  void set_warming(bool warming) { warming_ = warming; }

  [[nodiscard]] const PoolKey& key() const { return key_; }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const config::PoolSettings& settings() const { return database_.pool; }
  // TLS for SCRAM pass-through logins (config/server_tls.h); nullptr when the conninfo holds a password.
  [[nodiscard]] const std::shared_ptr<const config::ServerTlsContext>& server_tls() const {
    return database_.server_tls.context;
  }
  // Named prepared statements of this pool's clients (transaction mode).
  [[nodiscard]] StatementRegistry& statement_registry() { return statement_registry_; }
  [[nodiscard]] std::size_t prepared_statement_count() const { return statement_registry_.size(); }
  // Functions that may change settings unseen (transaction mode with a statement router).
  [[nodiscard]] const SettingFunctionWatch& setting_functions() const { return setting_functions_; }
  [[nodiscard]] std::size_t count(ServerState state) const { return list_for(state).size(); }
  [[nodiscard]] std::size_t waiting() const { return waiters_.size(); }
  [[nodiscard]] const LimitCounts& limit_counts() const { return limit_counts_; }
  void note_query_timeout() { ++limit_counts_.query_timeouts; }
  void note_transaction_timeout() { ++limit_counts_.transaction_timeouts; }
  // Its telemetry (README "Metrics"). `wait` holds the acquisitions granted after queueing (no idle
  // server, or others queued first): how often a client waits for a server, and how long.
  [[nodiscard]] metrics::PoolMetrics& metrics() { return metrics_; }
  [[nodiscard]] const metrics::PoolMetrics& metrics() const { return metrics_; }
  // Clients logged in to this pool; a pool with none and no server may be forgotten.
  void client_joined() { ++clients_; }
  void client_left() { --clients_; }
  [[nodiscard]] bool unused() const {
    return clients_ == 0 && waiters_.empty() && total_servers() == 0 && departing_.empty();
  }
  // Unused, and not a pool min_pool_size keeps warm with no client (the conninfo names its user).
  [[nodiscard]] bool forgettable() const { return unused() && !warm_without_clients(); }
  [[nodiscard]] std::size_t total_servers() const;
  // Closed servers whose backends PostgreSQL still counts: they hold their places (departing_backend.h).
  [[nodiscard]] std::size_t departing() const { return departing_.size(); }
  [[nodiscard]] std::optional<Clock::time_point> oldest_wait() const;
  template <class Visit>
  void for_each_server(Visit&& visit) const {
    for (const List* list : {&connecting_, &idle_, &active_, &resetting_}) {
      for (const auto& server : *list) visit(*server);
    }
  }

  // For ServerConnection and Scope.
  [[nodiscard]] uv_loop_t* loop() const { return context_.loop; }
  [[nodiscard]] int message_max() const { return context_.message_max; }
  [[nodiscard]] metrics::ClientCounters& client_counters() const { return *context_.client_counters; }
  void connect_succeeded(ServerConnection& server);
  void connect_failed(ServerConnection& server, const std::string& reason);
  void server_lost(ServerConnection& server, const std::string& reason);
  void teardown_finished(ServerConnection& server, bool ok, const std::string& reason);
  void end_scope(ServerConnection& server, std::uint64_t client_id, std::string_view reason,
                 bool client_mid_message, bool force_discard);

 private:
  using List = std::list<std::unique_ptr<ServerConnection>>;

  List& list_for(ServerState state);
  [[nodiscard]] const List& list_for(ServerState state) const;
  void transition(ServerConnection& server, ServerState next);
  void close_server(ServerConnection& server, std::string_view reason);
  // Out of the pool's lists and counts, freed on the next loop turn; its connection already closed.
  // Its places go back now, or once the backend behind `socket_copy` (>= 0) has gone.
  void forget_server(ServerConnection& server, int socket_copy);
  // Detaches the server, then return_detached_to_idle; false when the guard closed it instead.
  bool return_to_idle(ServerConnection& server);
  // The only way into the idle list, for a server already detached (end_scope detaches every one
  // it ends): checks the idle-list invariant, and closes a server that fails it (false).
  bool return_detached_to_idle(ServerConnection& server);
  void serve_waiters();
  void launch_connections();
  WaitTicket enqueue_waiter(const Waiter& waiter);
  void retire_waiter(WaitTicket ticket);
  // The welcome's parameters from `server`, unless known already or the server is of a replaced
  // conninfo.
  void learn_parameters(const ServerConnection& server);
  void fail_waiters(const char* sqlstate, const std::string& message);
  void close_idle_over_size();

  // SCRAM pass-through (pool_passthrough.cpp). The role servers log in as.
  [[nodiscard]] const std::string& server_user() const {
    return conninfo_user_.empty() ? key_.user : conninfo_user_;
  }
  // The keys the next server logs in with: the conninfo holds no password and one host, and a
  // client has proved this role's ClientKey; else nullopt (libpq's login).
  [[nodiscard]] std::optional<auth::ScramKeys> passthrough_keys() const;
  // True when this pool's servers would pass a client's SCRAM proof through (no password, one host,
  // its TLS context loaded with the config).
  [[nodiscard]] bool may_pass_through() const;
  struct ConnectFailure;
  // A refused key is forgotten; libpq's "no password supplied" on such a pool is told as what it is.
  void passthrough_connect_failed(const ServerConnection& server, const std::string& reason,
                                  ConnectFailure& failure);
  // Reads the setting functions on an idle (or just connected) server before it serves anyone.
  void read_setting_functions_on(ServerConnection& server);
  [[nodiscard]] bool setting_functions_due() const;
  [[nodiscard]] bool watches_functions() const;
  void functions_changed_at_release(TeardownPlan& plan, bool server_kept);
  [[nodiscard]] std::string reset_query_for(bool session_mode) const;
  [[nodiscard]] std::size_t size_limit() const;

  // Limits (pool_limits.cpp). One more server, when pool_size's budget has room and
  // max_db_connections and max_user_connections leave a place; false when it was not opened or
  // failed at once.
  bool open_server();
  bool take_places();
  void give_back_places();
  // A closed server's places, held until its backend has gone (departing_backend.h); `server` names
  // it in the log.
  void hold_places(std::string server, int socket_copy);
  void backend_departed(DepartingBackend& departing) override;
  void free_departed_places();
  // A backend not gone kDepartureWait after its close (stuck, or the network between is): its
  // places move all the same.
  void give_up_on_departures(Clock::time_point now);
  // Places came free: this worker's pools whose clients wait for one try again.
  void wake_starving_pools(const Pool* except);
  // The count whose limit keeps this pool's waiting clients from a server, or none.
  void set_starved_on(const CountSeat* seat);
  void stop_starving() {
    if (starved_on_ != nullptr) set_starved_on(nullptr);
  }
  [[nodiscard]] bool limited() const {
    return database_.pool.max_db_connections > 0 || database_.pool.max_user_connections > 0;
  }
  // Its clients began to wait at `limit`, the limit of `seat`'s count.
  void log_limit_reached(const CountSeat& seat, const char* limit);
  // Another pool waits for a place this one holds beyond its share: closes idle servers to give it.
  void give_owed_places();
  // Over its share of `limit` with `extra` more servers, while other pools wait for a place of the
  // seat's count: its pair's share beside the other pairs that wait, then its own beside its pair's
  // other waiting pools.
  [[nodiscard]] bool over_share(const CountSeat& seat, int limit, std::size_t extra, bool contending) const;
  [[nodiscard]] bool held_a_place_turn() const;
  [[nodiscard]] bool owes_idle_server(Clock::time_point recent) const;
  // min_pool_size: servers opened with nobody waiting, within every limit.
  void keep_warm();
  [[nodiscard]] bool warm_without_clients() const {
    return min_size() > 0 && conninfo_user_ == key_.user && key_.settings.empty();
  }
  [[nodiscard]] std::size_t min_size() const;
  // reserve_pool_size: the oldest waiter has waited reserve_pool_timeout_ms.
  void update_reserve(Clock::time_point now);
  [[nodiscard]] std::size_t base_size_limit() const;
  // server_check_query: an idle server unused for server_check_delay_s is checked before use.
  // Once per acquire, so no clock read: the janitor's last turn is the time (a check may come up to
  // one turn, 100 ms, late).
  [[nodiscard]] bool due_for_check(const ServerConnection& server) const {
    const int delay_s = database_.pool.server_check_delay_s;
    return delay_s > 0 && janitor_now_ - server.state_since() >= std::chrono::seconds(delay_s);
  }
  void start_check(ServerConnection& server);
  void check_finished(ScopeOutcome outcome);
  [[nodiscard]] std::size_t fair_share() const;
  [[nodiscard]] bool wants_sibling_server() const;
  [[nodiscard]] bool can_spare_server_for(const Pool& taker) const;
  // Budget spent while clients wait: close an idle server of a sibling pool to make room.
  bool take_idle_from_sibling();
  // Nobody here waits: hand an idle server's place to a sibling whose clients do.
  void give_idle_to_sibling();
  // Would launch_connections open a server now (not paused, under size, not backing off)?
  [[nodiscard]] bool can_launch_now() const;
  void finish_teardown(ServerConnection& server, ScopeOutcome outcome, const std::string& reason);
  void record_release(ScopeOutcome outcome, Clock::time_point started_at, std::uint64_t client_id,
                      std::string_view reason);

  PoolContext& context_;
  PoolKey key_;
  std::string name_;
  config::DatabaseConfig database_;
  std::vector<std::string> connect_keywords_;
  std::vector<std::string> connect_values_;
  std::optional<std::string> parameter_statuses_;
  // Bumped by a reload that changes the conninfo: a server of an older one is closed at release,
  // never idle again, and tells no welcome its parameters.
  std::uint64_t target_generation_ = 0;
  StatementRegistry statement_registry_;
  SettingFunctionWatch setting_functions_;

  List connecting_;
  List idle_;  // most recently used at the back
  List active_;
  List resetting_;
  List closing_;                                            // until the deferred deleter frees them
  std::list<std::unique_ptr<DepartingBackend>> departing_;  // oldest first
  std::list<Waiter> waiters_;
  // Nodes of waiters gone, reused by the next ones (up to kSpareWaiters): queueing allocates
  // nothing while clients outnumber servers, as at every transaction under load.
  std::list<Waiter> spare_waiters_;
  std::shared_ptr<ServerBudget> budget_;
  std::size_t clients_ = 0;
  bool paused_ = false;
  LimitCounts limit_counts_;
  ConnectionCounts::Seats seats_;  // max_db_connections' count, max_user_connections'
  const CountSeat* starved_on_ = nullptr;
  // log_limit_reached()'s, per seat (database, user): when it last logged, and how often the
  // clients began to wait since.
  struct LimitLog {
    std::optional<Clock::time_point> logged_at;
    std::uint64_t waits_unlogged = 0;
  };
  std::array<LimitLog, 2> limit_logs_;
  std::string conninfo_user_;  // a user the conninfo names: min_pool_size keeps its pool warm with no client
  bool passthrough_possible_ = false;  // may_pass_through() of the connect parameters
  bool reserve_open_ = false;
  Clock::time_point janitor_now_{};  // tick()'s
  bool warming_ = true;
  std::size_t checks_in_flight_ = 0;

  // A failed connect, until one succeeds: waiters that time out are told it,
  // and the next attempt waits for server_login_retry_ms.
  struct ConnectFailure {
    std::string sqlstate;
    std::string message;
    bool transient = true;  // worth retrying: too many clients, starting up, refused socket
    Clock::time_point at{};
  };
  std::optional<ConnectFailure> connect_failure_;
  Clock::time_point next_connect_at_{};
  // Last: its four histograms are 31 KB, and the fields above, which a transaction touches, then
  // lie on one or two pages instead of both ends of them.
  metrics::PoolMetrics metrics_;
};

}  // namespace sluice::pool
