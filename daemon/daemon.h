// sluiced's top-level object on its one loop: the listeners, the pools, the
// client sessions, the janitor, the signals, and the service state machine
// running → (paused) → draining → drained → stopped (DESIGN §3).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "daemon/client_session.h"
#include "daemon/control_request.h"
#include "daemon/control_server.h"
#include "daemon/listener.h"
#include "daemon/loop_monitor.h"
#include "daemon/systemd_notify.h"
#include "net/deferred_deleter.h"
#include "pool/pool.h"
#include "pool/teardown_stats.h"

namespace sluice::daemon {

enum class ServiceState { running, paused, draining, drained, stopped };
std::string_view service_state_name(ServiceState state);

struct ReloadOutcome {
  bool ok = false;
  std::string message;  // the reason a reload was rejected
  std::chrono::steady_clock::time_point at;
};

struct DrainProgress {
  std::chrono::steady_clock::time_point started_at;
  std::chrono::steady_clock::time_point deadline;
  bool exit_when_done = false;  // SIGTERM: exit once drained and torn down
  int forced = 0;               // scopes cut at the deadline
};

class Daemon {
 public:
  using Clock = std::chrono::steady_clock;

  Daemon(config::Config config, std::string config_path);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Opens the listeners and runs the loop until it stops; the exit code.
  int run();

  // Operations (signals and the control socket).
  void start_drain(std::chrono::milliseconds timeout, bool exit_when_done);
  void pause();
  void resume();
  // Reads the config file off the loop, validates it, applies what can change live.
  void reload();
  void shutdown(std::string_view reason);
  // One control-socket request; the answer goes back as one JSON line.
  nlohmann::json handle_control(const ControlRequest& request);

  // For client sessions.
  [[nodiscard]] uv_loop_t* loop() { return &loop_; }
  [[nodiscard]] const config::Config& config() const { return config_; }
  [[nodiscard]] bool accepting_logins() const {
    return state_ == ServiceState::running || state_ == ServiceState::paused;
  }
  [[nodiscard]] bool draining() const { return state_ == ServiceState::draining; }
  // The pool for a configured database, made on first use; nullptr when unknown.
  pool::Pool* pool_for(const std::string& database, const std::string& user);
  void assign_cancel_key(ClientSession& client, std::uint32_t& process_id, std::uint32_t& secret);
  void cancel(std::uint32_t process_id, std::uint32_t secret);
  void client_closed(ClientSession& client);

  // For reports.
  [[nodiscard]] ServiceState state() const { return state_; }
  [[nodiscard]] Clock::time_point started_at() const { return started_at_; }
  [[nodiscard]] const std::optional<DrainProgress>& drain() const { return drain_; }
  [[nodiscard]] const std::list<std::unique_ptr<ClientSession>>& clients() const { return clients_; }
  [[nodiscard]] const std::map<pool::PoolKey, std::unique_ptr<pool::Pool>>& pools() const { return pools_; }
  [[nodiscard]] const pool::TeardownStats& teardown_stats() const { return stats_; }
  [[nodiscard]] const LoopMonitor& loop_monitor() const { return *loop_monitor_; }
  [[nodiscard]] const std::optional<ReloadOutcome>& last_reload() const { return last_reload_; }

 private:
  void install_signal_handlers();
  void accept_client(int fd, Transport transport);
  void on_janitor();
  void on_signal(int signum);
  void advance_drain(Clock::time_point now);
  void apply_config(config::Config next);
  // Runs `call` on a later loop turn (after the current callback has finished).
  void defer_call(std::function<void()> call);
  void stop_loop();
  void notify_status();
  void start_watchdog();
  void close_handles();

  config::Config config_;
  std::string config_path_;
  uv_loop_t loop_{};
  Clock::time_point started_at_ = Clock::now();
  ServiceState state_ = ServiceState::running;
  std::optional<DrainProgress> drain_;
  std::unique_ptr<net::DeferredDeleter> deleter_;
  std::unique_ptr<LoopMonitor> loop_monitor_;
  pool::TeardownStats stats_;
  pool::PoolContext pool_context_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<ControlServer> control_;
  std::map<pool::PoolKey, std::unique_ptr<pool::Pool>> pools_;
  std::list<std::unique_ptr<ClientSession>> clients_;
  std::unordered_map<std::uint32_t, ClientSession*> clients_by_cancel_pid_;
  std::uint64_t next_client_id_ = 1;
  std::mt19937 cancel_pid_generator_{std::random_device{}()};
  uv_timer_t janitor_{};
  uv_timer_t watchdog_{};
  SystemdNotifier systemd_;
  std::uint64_t janitor_ticks_ = 0;
  std::vector<std::unique_ptr<uv_signal_t>> signals_;
  bool reload_in_flight_ = false;
  std::optional<ReloadOutcome> last_reload_;
};

}  // namespace sluice::daemon
