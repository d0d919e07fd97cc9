// sluiced's top-level object on the main loop: the listeners, the control
// socket, the signals, systemd, and the service state machine
// running → (paused) → draining → drained → stopped (DESIGN §3). Clients and
// pools live in the workers (daemon/worker.h); accepted sockets are handed to
// the worker with the fewest clients.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "daemon/control_request.h"
#include "daemon/control_server.h"
#include "daemon/file_limit.h"
#include "daemon/listener.h"
#include "daemon/systemd_notify.h"
#include "daemon/upgrade/unconfirmed_moves.h"
#include "daemon/worker.h"
#include "metrics/metrics_server.h"
#include "net/mailbox.h"
#include "net/socket_reactor.h"

namespace sluice::daemon {

namespace upgrade {
class Predecessor;
class Successor;
}  // namespace upgrade

enum class ServiceState { running, paused, draining, drained, stopped };
std::string_view service_state_name(ServiceState state);

struct ReloadOutcome {
  bool ok = false;
  std::string message;  // the reason a reload was rejected
  std::chrono::steady_clock::time_point at;
};

struct ReloadCounts {
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
};

struct DrainProgress {
  std::chrono::steady_clock::time_point started_at;
  std::chrono::steady_clock::time_point deadline;
  bool exit_when_done = false;      // SIGTERM: exit once drained and torn down
  std::uint64_t generation = 0;     // workers' reports name the drain they belong to
  std::size_t workers_drained = 0;  // workers whose clients have all gone
  std::size_t workers_settled = 0;  // ... and whose servers are idle or closed
  int forced = 0;                   // scopes cut at the deadline, once their worker drained
};

class Daemon {
 public:
  using Clock = std::chrono::steady_clock;

  // `predecessor`: the running sluiced this one replaces (live upgrade), or nullptr.
  Daemon(config::Config config, std::string config_path, std::unique_ptr<upgrade::Predecessor> predecessor);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Opens the listeners and runs the loop until it stops; the exit code.
  int run();

  // Operations (signals and the control socket).
  // `grace`: see Worker::start_drain (a live upgrade's drain).
  void start_drain(std::chrono::milliseconds timeout, bool exit_when_done,
                   std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  void pause();
  void resume();
  // Reads the config file off the loop, validates it, applies what can change live.
  void reload();
  void shutdown(std::string_view reason);
  // Live upgrade (daemon/daemon_upgrade.cpp): starts `binary` (empty: this process's own) and
  // hands it the listening sockets; `done` gets the outcome as a control answer.
  void start_upgrade(const std::string& binary, std::chrono::milliseconds ready_timeout,
                     std::function<void(nlohmann::json)> done);
  // One control-socket request; `respond` gets the JSON answer, on the main
  // loop, once every worker has given its share.
  void handle_control(const ControlRequest& request, ControlServer::Respond respond);

  // For workers, from any thread.
  void route_cancel(std::uint32_t process_id, std::uint32_t secret);
  // A cancel key no worker gave out: after an upgrade, the old process may have.
  void cancel_unknown_key(std::uint32_t process_id, std::uint32_t secret);
  // A live upgrade's old process: a client's socket and its "client" message for the new process;
  // `kept`: a duplicate of the client's socket, held until the new process answers for it.
  void hand_over_client(nlohmann::json message, std::vector<int> descriptors, int kept);
  // A live upgrade's new process, from a worker: tells the old process what became of the client
  // its move `move` brought (adopted, or declined: the old process drains it).
  void settle_moved_client(std::uint64_t move, bool adopted);
  // Any thread: the new process died after it took over (workers move no one from then on).
  [[nodiscard]] bool successor_lost() const { return successor_lost_.load(std::memory_order_acquire); }
  // Any thread: server connections per database and per user, across the workers.
  [[nodiscard]] pool::ConnectionCounts& connection_counts() { return connection_counts_; }
  [[nodiscard]] pool::ScramKeyStore& scram_keys() { return scram_keys_; }
  void worker_drained(std::uint64_t generation, int forced);
  void worker_settled(std::uint64_t generation);
  // An exception left a worker's loop: shut down and exit with status 70.
  void worker_failed(std::size_t index, std::string what);

  // For reports.
  [[nodiscard]] const config::Config& config() const { return config_; }
  [[nodiscard]] ServiceState state() const { return state_; }
  [[nodiscard]] Clock::time_point started_at() const { return started_at_; }
  [[nodiscard]] const std::optional<DrainProgress>& drain() const { return drain_; }
  [[nodiscard]] std::size_t worker_count() const { return workers_.size(); }
  [[nodiscard]] const std::optional<ReloadOutcome>& last_reload() const { return last_reload_; }
  [[nodiscard]] const ReloadCounts& reload_counts() const { return reload_counts_; }
  // Clients refused on the main loop before any worker saw them (shutting down, max_client_conn).
  [[nodiscard]] const metrics::ClientCounters& refused_at_accept() const { return refused_at_accept_; }
  // The live upgrade this process takes part in, for `status`; null when none.
  [[nodiscard]] nlohmann::json upgrade_report() const;
  // Clients handed over to a successor, and adopted from a predecessor, since this process started.
  [[nodiscard]] std::uint64_t clients_moved_out() const { return clients_moved_out_; }
  [[nodiscard]] std::uint64_t clients_moved_in() const { return clients_moved_in_; }

 private:
  [[nodiscard]] bool accepting_logins() const {
    return state_ == ServiceState::running || state_ == ServiceState::paused;
  }
  void install_signal_handlers();
  void accept_client(int fd, Transport transport);
  // Clients of every worker (each keeps its count in an atomic the main loop reads).
  [[nodiscard]] std::size_t client_count() const;
  void on_signal(int signum);
  void on_worker_drained(std::uint64_t generation, int forced);
  void on_worker_settled(std::uint64_t generation);
  void exit_if_drained();
  // Every worker's share of a report, combined on the main loop.
  void gather_report(ControlCommand command, ControlServer::Respond respond);
  // Runs `share` on every worker's loop and hands the shares, in worker order, to `done` on the main loop.
  template <class Share>
  void gather(std::function<Share(const Worker&)> share, std::function<void(std::vector<Share>)> done);
  // A /metrics scrape (metrics/metrics_server.h).
  void scrape_metrics(metrics::Format format, metrics::MetricsServer::Respond respond);
  void record_reload(ReloadOutcome outcome);
  void apply_config(config::Config next);
  // Runs `call` on a later turn of the main loop (after the current callback has finished).
  void defer_call(std::function<void()> call);
  void for_each_worker(const std::function<void(Worker&)>& call);
  // Stops the workers (failing their clients first when `fail_clients`), then the main loop.
  void stop_loop(bool fail_clients);
  void notify_status();
  // Live upgrade (daemon/daemon_upgrade.cpp).
  int startup_failed(const std::string& reason);
  [[nodiscard]] bool take_over_from_predecessor();
  void on_successor_serving(pid_t pid, const std::function<void(nlohmann::json)>& done);
  // A live upgrade's new process serves: this one hands over and drains.
  [[nodiscard]] bool handed_over() const;
  void report_upgrade_progress();
  // The new process: a client the old one handed over (state as frontend/moved_client.h reads it).
  void adopt_moved_client(const nlohmann::json& state, std::vector<int> descriptors, std::uint64_t move);
  // The old process: the new one's "moved" answer.
  void on_move_settled(const nlohmann::json& message);
  [[nodiscard]] std::vector<Listener*> all_listeners();
  void start_watchdog();
  void on_watchdog();

  config::Config config_;
  std::string config_path_;
  FileLimit file_limit_;  // raised at start (daemon/file_limit.h)
  uv_loop_t loop_{};
  std::unique_ptr<net::SocketReactor> reactor_;  // the loop's sockets; outlives the loop's close
  Clock::time_point started_at_ = Clock::now();
  ServiceState state_ = ServiceState::running;
  std::optional<DrainProgress> drain_;
  std::uint64_t drain_generation_ = 0;
  // Drained and about to exit: the control socket and /metrics answer what they accepted, and
  // the daemon stops once they have; nothing may bring it back to running then.
  bool exiting_ = false;
  std::unique_ptr<net::Mailbox> mailbox_;
  std::atomic<std::uint64_t> server_ids_{1};
  pool::ConnectionCounts connection_counts_;  // before the workers, whose pools hold references
  pool::ScramKeyStore scram_keys_;            // the same: SCRAM pass-through's keys
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<metrics::MetricsServer> metrics_;
  std::uint64_t next_client_id_ = 1;
  uv_timer_t status_timer_{};
  uv_timer_t watchdog_{};
  SystemdNotifier systemd_;
  std::vector<std::unique_ptr<uv_signal_t>> signals_;
  int exit_code_ = 0;
  bool reload_in_flight_ = false;
  std::optional<ReloadOutcome> last_reload_;
  ReloadCounts reload_counts_;
  metrics::ClientCounters refused_at_accept_;
  // /metrics requests waiting for the gather in flight (metrics_snapshot.cpp).
  std::vector<std::pair<metrics::Format, metrics::MetricsServer::Respond>> scrapes_waiting_;
  std::string executable_;  // this binary as started: what `upgrade` runs unless told otherwise
  std::unique_ptr<upgrade::Successor> successor_;      // the process this one hands over to
  std::unique_ptr<upgrade::Predecessor> predecessor_;  // the process this one took over from
  std::uint64_t clients_moved_out_ = 0;                // handed over to the successor
  std::uint64_t clients_moved_in_ = 0;                 // adopted from the predecessor
  std::atomic<bool> successor_lost_{false};
  upgrade::UnconfirmedMoves unconfirmed_moves_;  // clients handed over, not yet answered for
};

template <class Share>
void Daemon::gather(std::function<Share(const Worker&)> share, std::function<void(std::vector<Share>)> done) {
  struct Gathering {
    std::vector<Share> shares;
    std::size_t missing;
    std::function<void(std::vector<Share>)> done;
  };
  auto gathering = std::make_shared<Gathering>(
      Gathering{std::vector<Share>(workers_.size()), workers_.size(), std::move(done)});
  for_each_worker([this, gathering, share = std::move(share)](Worker& worker) {
    auto taken = std::make_shared<Share>(share(worker));
    mailbox_->post([gathering, taken, index = worker.index()] {
      gathering->shares[index] = std::move(*taken);
      if (--gathering->missing == 0) gathering->done(std::move(gathering->shares));
    });
  });
}

}  // namespace sluice::daemon
