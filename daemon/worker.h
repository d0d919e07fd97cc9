// One event loop's share of the daemon: its client sessions, its pools (with
// its share of each pool's servers), its janitor and its telemetry. With
// `workers` = 1 the only worker runs on the daemon's own loop; with more, each
// runs its own loop on its own thread and hears from the daemon through its
// mailbox (README "Worker loops").
#pragma once

#include <uv.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "config/config.h"
#include "daemon/listener.h"
#include "daemon/loop_monitor.h"
#include "frontend/client_session.h"
#include "frontend/moved_client.h"
#include "frontend/secret_lookup.h"
#include "metrics/client_counters.h"
#include "metrics/pool_metrics.h"
#include "net/deferred_deleter.h"
#include "net/loop_timer.h"
#include "net/mailbox.h"
#include "net/socket_reactor.h"
#include "pool/pool.h"
#include "pool/teardown_stats.h"

namespace sluice::daemon {

using frontend::ClientSession;

class Daemon;

class Worker {
 public:
  using Pools = std::map<pool::PoolKey, std::unique_ptr<pool::Pool>, pool::PoolKeyOrder>;

  using Clock = std::chrono::steady_clock;

  // `shared_loop`: the daemon's loop when this is the only worker; nullptr for
  // a loop and thread of its own.
  Worker(Daemon& daemon, std::size_t index, std::size_t worker_count, config::Config config,
         uv_loop_t* shared_loop, std::atomic<std::uint64_t>& server_ids);
  // After stop() has run and join() returned.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Daemon thread: start the worker's thread (when it has one), wait for it to end.
  void start();
  void join();
  // Runs `call` on this worker's loop: at once when it shares the caller's
  // loop, else through its mailbox. From the daemon's thread or another worker's.
  // A template, so that a call run at once is not first copied into a std::function.
  template <class Call>
  void post(Call&& call) {
    if (!mailbox_) return call();
    mailbox_->post(std::function<void()>(std::forward<Call>(call)));
  }

  // Operations, on the worker's loop (through post).
  void adopt_client(int fd, Transport transport, std::uint64_t id);
  // A client the old process handed over in a live upgrade: it goes on where it was, unaware.
  // `descriptors`: its socket, then its server's when it brought one.
  // `move`: the old process's number for it, answered with what became of it.
  void adopt_moved_client(std::vector<int> descriptors, frontend::MovedClient moved, std::uint64_t id,
                          std::uint64_t move);
  void set_paused(bool paused);
  // Closes idle clients now, the others at their next transaction boundary,
  // and forces what is left at `deadline`; tells the daemon when its clients
  // are gone and when its servers have settled. `generation` names the drain.
  // `grace` (a live upgrade's drain): for that long clients still logging in finish, and idle
  // ones are left alone, so that a client that connected just before the handover runs its
  // transaction; then the drain goes on as usual.
  // `hand_over` (a live upgrade): clients that can move go to the new process at their boundary
  // instead of being closed (ClientSession::move_if_at_rest).
  void start_drain(Clock::time_point deadline, std::uint64_t generation,
                   std::chrono::milliseconds grace = std::chrono::milliseconds(0), bool hand_over = false);
  void end_drain();
  // A live upgrade's new process is gone: the drain goes on without moving anyone.
  void stop_handing_over();
  void apply_config(config::Config next);
  // Tells every client the daemon is going away, then stop().
  void shutdown();
  // Closes the pools (PostgreSQL rolls back what a closed backend had open) and stops the loop.
  void stop();

  // For client sessions, on the worker's loop.
  [[nodiscard]] uv_loop_t* loop() { return loop_; }
  [[nodiscard]] const config::Config& config() const { return config_; }
  [[nodiscard]] bool accepting_logins() const { return (!drain_ || drain_->sweep_at) && !stopped_; }
  [[nodiscard]] bool draining() const { return drain_.has_value() && !drain_->clients_gone; }
  // Draining for a live upgrade: clients that can move go to the new process.
  [[nodiscard]] bool handing_over() const;
  // The handover message for a client's state and `descriptors` sockets; nullopt when it is too
  // large to send.
  [[nodiscard]] static std::optional<nlohmann::json> handover_message(const nlohmann::json& state,
                                                                      std::size_t descriptors);
  // Sends it with the sockets (duplicates, now the daemon's: client first, then its server);
  // `kept`: another duplicate of the client's, which the daemon keeps until the move is settled.
  void hand_over_client(nlohmann::json message, std::vector<int> descriptors, int kept);
  // The pool for a configured database, made on first use; nullptr when unknown.
  pool::Pool* pool_for(const std::string& database, const std::string& user,
                       const protocol::StartupSettings& settings);
  // The key's process id says which worker holds the client (id % workers).
  void assign_cancel_key(ClientSession& client, std::uint32_t& process_id, std::uint32_t& secret);
  // A moved client keeps the key the old process gave it (the daemon chose this worker by its id);
  // it may share the process id with a client of this process: the secret tells them apart.
  void adopt_cancel_key(ClientSession& client, std::uint32_t process_id);
  // A CancelRequest: this worker's client, or handed to the worker the key names.
  void cancel(std::uint32_t process_id, std::uint32_t secret);
  void client_closed(ClientSession& client);
  // auth.query lookups and their cache, this worker's own.
  [[nodiscard]] frontend::SecretLookup& secret_lookup();
  // SCRAM pass-through's keys, daemon-wide: a client's SCRAM login leaves its role's here.
  [[nodiscard]] pool::ScramKeyStore& scram_keys() const { return *pool_context_.scram_keys; }

  // For reports, on the worker's loop.
  [[nodiscard]] std::size_t index() const { return index_; }
  [[nodiscard]] const std::list<std::unique_ptr<ClientSession>>& clients() const { return clients_; }
  [[nodiscard]] const Pools& pools() const { return pools_; }
  [[nodiscard]] const pool::TeardownStats& teardown_stats() const { return stats_; }
  [[nodiscard]] const LoopMonitor& loop_monitor() const { return *loop_monitor_; }
  [[nodiscard]] const metrics::ClientCounters& client_counters() const { return client_counters_; }
  [[nodiscard]] metrics::ClientCounters& client_counters() { return client_counters_; }
  // What the pools this worker has forgotten counted, by (database, user) while a pool of the pair
  // lives on any worker, then by database (fold_retired_metrics): every series stays monotonic.
  [[nodiscard]] const std::map<std::pair<std::string, std::string>, metrics::PoolMetrics>&
  retired_pool_metrics() const {
    return retired_pool_metrics_;
  }
  [[nodiscard]] const std::map<std::string, metrics::PoolMetrics>& departed_pool_metrics() const {
    return departed_pool_metrics_;
  }
  [[nodiscard]] int forced_scopes() const { return drain_ ? drain_->forced : 0; }

  // Any thread: clients adopted and not yet closed (the daemon balances on it),
  // and the loop time of the worker's last janitor turn (the watchdog checks it).
  [[nodiscard]] std::size_t client_count() const { return client_count_.load(std::memory_order_relaxed); }
  void count_incoming_client() { client_count_.fetch_add(1, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t heartbeat_ms() const { return heartbeat_ms_.load(std::memory_order_relaxed); }

 private:
  struct Drain {
    Clock::time_point deadline;
    std::uint64_t generation = 0;
    int forced = 0;             // scopes cut at the deadline
    bool clients_gone = false;  // told the daemon
    bool settled = false;       // told the daemon: no server left active or resetting
    // When idle clients are closed, if not at once (a live upgrade's grace); logins finish until then.
    std::optional<Clock::time_point> sweep_at = std::nullopt;
    bool hand_over = false;  // see start_drain
  };

  std::uint32_t next_cancel_secret();
  void on_janitor();
  void advance_drain(Clock::time_point now);
  // Closes the clients between transactions, and refuses those still logging in.
  void sweep_for_drain();
  // This worker's share of a database's pool_size (at least one server).
  [[nodiscard]] config::DatabaseConfig share_of(const config::DatabaseConfig& database) const;
  // A pool's settings under `config`: this worker's share, and the user's own limit (users.<name>).
  [[nodiscard]] config::DatabaseConfig settings_for(const config::Config& config,
                                                    const config::DatabaseConfig& database,
                                                    const std::string& user) const;
  void warm_forced_user_pools();
  Pools::iterator forget_pool(Pools::iterator it);
  void fold_retired_metrics();

  Daemon& daemon_;
  std::size_t index_;
  std::size_t worker_count_;
  config::Config config_;
  std::unique_ptr<uv_loop_t> own_loop_;  // null when sharing the daemon's loop
  uv_loop_t* loop_;
  std::unique_ptr<net::SocketReactor> own_reactor_;  // with own_loop_
  std::unique_ptr<net::Mailbox> mailbox_;            // only with a loop of its own
  std::thread thread_;
  std::unique_ptr<net::DeferredDeleter> deleter_;
  std::unique_ptr<LoopMonitor> loop_monitor_;
  metrics::ClientCounters client_counters_;
  std::map<std::pair<std::string, std::string>, metrics::PoolMetrics> retired_pool_metrics_;
  std::map<std::string, metrics::PoolMetrics> departed_pool_metrics_;  // by database
  pool::PoolContext pool_context_;
  Pools pools_;
  pool::Pool* last_found_pool_ = nullptr;  // pool_for's last answer, under the same config
  // One per (database, user): shared by its pools of different startup settings.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<pool::ServerBudget>> budgets_;
  std::list<std::unique_ptr<ClientSession>> clients_;
  std::unique_ptr<frontend::SecretLookup> secret_lookup_;  // made on first use; ended before the pools
  std::unordered_multimap<std::uint32_t, ClientSession*> clients_by_cancel_pid_;
  std::array<std::uint32_t, 64> secrets_{};  // from getrandom, handed out from the back
  std::size_t secrets_left_ = 0;
  std::unique_ptr<net::LoopTimer> janitor_;  // made once the loop is
  bool paused_ = false;
  bool stopped_ = false;
  bool forcing_ = false;  // inside advance_drain's loop closing clients at the deadline
  std::optional<Drain> drain_;
  std::atomic<std::size_t> client_count_{0};
  std::atomic<std::uint64_t> heartbeat_ms_{0};
  // Last, after the fields a transaction touches, so that they share a page or two: the teardown
  // histograms are 31 KB, the generator's state 5 KB. Destroyed first: the destructor's body has
  // ended the pools and clients that record into stats_.
  std::mt19937 cancel_pid_generator_{std::random_device{}()};
  pool::TeardownStats stats_;
};

}  // namespace sluice::daemon
