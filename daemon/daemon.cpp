#include "daemon/daemon.h"

#include <sys/random.h>
#include <unistd.h>

#include <csignal>

#include "common/log.h"
#include "config/config_loader.h"
#include "protocol/backend_messages.h"
#include "protocol/sqlstate.h"

namespace sluice::daemon {
namespace {

constexpr std::uint64_t kJanitorIntervalMs = 100;

std::string client_socket_path(const config::ListenConfig& listen) {
  return listen.unix_socket_dir + "/.s.PGSQL." + std::to_string(listen.port);
}

// A config read on the thread pool, handed back to the loop.
struct ReloadWork {
  uv_work_t request{};
  Daemon* daemon = nullptr;
  std::string path;
  std::optional<Result<config::Config>> result;
};

}  // namespace

std::string_view service_state_name(ServiceState state) {
  switch (state) {
    case ServiceState::running:
      return "running";
    case ServiceState::paused:
      return "paused";
    case ServiceState::draining:
      return "draining";
    case ServiceState::drained:
      return "drained";
    case ServiceState::stopped:
      return "stopped";
  }
  return "stopped";
}

Daemon::Daemon(config::Config config, std::string config_path)
    : config_(std::move(config)), config_path_(std::move(config_path)) {
  uv_loop_init(&loop_);
  deleter_ = std::make_unique<net::DeferredDeleter>(&loop_);
  loop_monitor_ = std::make_unique<LoopMonitor>(&loop_, config_.diagnostics.slow_callback_ms);
  stats_.set_sla(std::chrono::milliseconds(config_.teardown.sla_ms));
  pool_context_.loop = &loop_;
  pool_context_.deleter = deleter_.get();
  pool_context_.stats = &stats_;
  pool_context_.message_max = config_.limits.message_max;
  pool_context_.teardown_max_ms = config_.teardown.max_ms;
}

Daemon::~Daemon() {
  clients_.clear();
  pools_.clear();
  listeners_.clear();
  loop_monitor_.reset();
  deleter_.reset();
  close_handles();
  uv_loop_close(&loop_);
}

// Order matters: signal handlers first (a SIGTERM during start-up drains
// rather than kills), then the control socket, then the client listeners, so
// that once clients can connect, operators can too.
int Daemon::run() {
  install_signal_handlers();
  ControlServer::Settings control_settings;
  control_settings.path = config_.control.socket;
  control_settings.group = config_.control.group;
  control_settings.max_request_bytes = static_cast<std::size_t>(config_.limits.control_request_max);
  auto control =
      ControlServer::open(&loop_, std::move(control_settings),
                          [this](const ControlRequest& request) { return handle_control(request); });
  if (!control) {
    log::error(control.error());
    return 1;
  }
  control_ = std::move(*control);

  auto on_accept = [this](int fd, Transport transport) { accept_client(fd, transport); };
  auto unix_listener = Listener::open_unix(&loop_, client_socket_path(config_.listen), 0777, on_accept);
  if (!unix_listener) {
    log::error(unix_listener.error());
    return 1;
  }
  listeners_.push_back(std::move(*unix_listener));
  if (config_.listen.tcp) {
    auto tcp_listener = Listener::open_tcp(&loop_, *config_.listen.tcp, on_accept);
    if (!tcp_listener) {
      log::error(tcp_listener.error());
      return 1;
    }
    listeners_.push_back(std::move(*tcp_listener));
  }

  uv_timer_init(&loop_, &janitor_);
  janitor_.data = this;
  uv_timer_start(
      &janitor_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->on_janitor(); }, kJanitorIntervalMs,
      kJanitorIntervalMs);

  for (const auto& listener : listeners_) log::info("listening on ", listener->name());
  start_watchdog();
  systemd_.ready();
  notify_status();
  uv_run(&loop_, UV_RUN_DEFAULT);
  return 0;
}

void Daemon::install_signal_handlers() {
  for (const int signum : {SIGINT, SIGTERM, SIGHUP}) {
    auto handle = std::make_unique<uv_signal_t>();
    uv_signal_init(&loop_, handle.get());
    handle->data = this;
    uv_signal_start(
        handle.get(), [](uv_signal_t* h, int s) { static_cast<Daemon*>(h->data)->on_signal(s); }, signum);
    signals_.push_back(std::move(handle));
  }
  std::signal(SIGPIPE, SIG_IGN);
}

void Daemon::on_signal(int signum) {
  switch (signum) {
    case SIGHUP:
      return reload();
    case SIGTERM:
      return start_drain(std::chrono::seconds(config_.drain.timeout_s), /*exit_when_done=*/true);
    default:
      return shutdown("SIGINT");
  }
}

// ---- service state -------------------------------------------------------

void Daemon::pause() {
  if (state_ != ServiceState::running) return;
  state_ = ServiceState::paused;
  log::info("paused: no new scopes are granted; scopes in flight finish");
  for (auto& [key, pool] : pools_) pool->set_paused(true);
}

void Daemon::resume() {
  if (state_ == ServiceState::running || state_ == ServiceState::stopped) return;
  // After a drain the listeners are still open (they refuse with an error): back to running.
  state_ = ServiceState::running;
  drain_.reset();
  log::info("resumed");
  for (auto& [key, pool] : pools_) pool->set_paused(false);
}

void Daemon::start_drain(std::chrono::milliseconds timeout, bool exit_when_done) {
  if (state_ == ServiceState::draining || state_ == ServiceState::drained) {
    drain_->exit_when_done = drain_->exit_when_done || exit_when_done;
    return advance_drain(Clock::now());
  }
  if (state_ == ServiceState::stopped) return;
  const auto now = Clock::now();
  drain_ = DrainProgress{now, now + timeout, exit_when_done, 0};
  state_ = ServiceState::draining;
  systemd_.stopping();
  log::info("drain started: ", clients_.size(), " clients, deadline in ", timeout.count(), " ms");
  for (auto& [key, pool] : pools_) pool->set_paused(false);
  // Each client is closed at its next transaction boundary; idle ones now.
  for (auto it = clients_.begin(); it != clients_.end();) {
    ClientSession& client = **it++;
    client.drain();
  }
  advance_drain(now);
}

void Daemon::notify_status() {
  if (!systemd_.enabled()) return;
  std::size_t active = 0;
  std::size_t idle = 0;
  for (const auto& [key, pool] : pools_) {
    active += pool->count(pool::ServerState::active);
    idle += pool->count(pool::ServerState::idle);
  }
  systemd_.status(std::string(service_state_name(state_)) + ": " + std::to_string(clients_.size()) +
                  " clients, " + std::to_string(active) + " active and " + std::to_string(idle) +
                  " idle servers");
}

// WATCHDOG=1 comes from a loop timer, so a stuck loop stops it and systemd restarts us.
void Daemon::start_watchdog() {
  const auto interval = systemd_.watchdog_interval();
  if (!interval) return;
  const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, interval->count() / 1000));
  uv_timer_init(&loop_, &watchdog_);
  watchdog_.data = this;
  uv_timer_start(
      &watchdog_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->systemd_.watchdog(); }, 0, ms);
}

void Daemon::advance_drain(Clock::time_point now) {
  if (!drain_) return;
  if (state_ == ServiceState::draining && now >= drain_->deadline) {
    for (auto it = clients_.begin(); it != clients_.end();) {
      ClientSession& client = **it++;
      if (client.force_close_for_drain()) ++drain_->forced;
    }
  }
  if (state_ == ServiceState::draining && clients_.empty()) {
    state_ = ServiceState::drained;
    log::info("drained: every client has left (", drain_->forced, " scopes forced at the deadline)");
  }
  if (state_ != ServiceState::drained) return;
  bool tearing_down = false;
  for (auto& [key, pool] : pools_) {
    pool->close_idle("drained");
    tearing_down = tearing_down || pool->count(pool::ServerState::resetting) > 0 ||
                   pool->count(pool::ServerState::active) > 0;
  }
  if (drain_->exit_when_done && !tearing_down) stop_loop();
}

void Daemon::shutdown(std::string_view reason) {
  if (state_ == ServiceState::stopped) return;
  log::info("shutting down: ", reason);
  systemd_.stopping();
  for (auto it = clients_.begin(); it != clients_.end();) {
    ClientSession& client = **it++;
    client.fail(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
  }
  stop_loop();
}

// Closing a server ends its backend, and PostgreSQL rolls back what it had open.
void Daemon::stop_loop() {
  state_ = ServiceState::stopped;
  listeners_.clear();
  control_.reset();
  pools_.clear();
  uv_timer_stop(&janitor_);
  uv_timer_stop(&watchdog_);
  for (auto& signal : signals_) uv_signal_stop(signal.get());
  log::info("stopped");
  uv_stop(&loop_);
}

void Daemon::close_handles() {
  uv_walk(
      &loop_,
      [](uv_handle_t* handle, void*) {
        if (uv_is_closing(handle) == 0) uv_close(handle, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
}

// ---- reload --------------------------------------------------------------

void Daemon::reload() {
  if (reload_in_flight_ || state_ == ServiceState::stopped) return;
  reload_in_flight_ = true;
  log::info("reloading ", config_path_);
  systemd_.reloading();
  auto* work = new ReloadWork;
  work->daemon = this;
  work->path = config_path_;
  work->request.data = work;
  uv_queue_work(
      &loop_, &work->request,
      [](uv_work_t* request) {
        auto* w = static_cast<ReloadWork*>(request->data);
        w->result.emplace(config::load_config_file(w->path));
      },
      [](uv_work_t* request, int status) {
        std::unique_ptr<ReloadWork> w(static_cast<ReloadWork*>(request->data));
        Daemon& daemon = *w->daemon;
        daemon.reload_in_flight_ = false;
        daemon.systemd_.ready();  // reload over, whatever its outcome: the running config serves
        if (status != 0 || !w->result) {
          daemon.last_reload_ = ReloadOutcome{false, "the configuration could not be read", Clock::now()};
          return log::error("reload failed: the configuration could not be read");
        }
        if (!*w->result) {
          daemon.last_reload_ = ReloadOutcome{false, w->result->error(), Clock::now()};
          return log::error("reload rejected, configuration unchanged: ", w->result->error());
        }
        daemon.apply_config(std::move(w->result->value()));
        daemon.last_reload_ = ReloadOutcome{true, "", Clock::now()};
      });
}

void Daemon::apply_config(config::Config next) {
  if (next.listen != config_.listen || next.control != config_.control) {
    log::warning("reload: listen and control settings change only on restart; kept the running ones");
    next.listen = config_.listen;
    next.control = config_.control;
  }
  for (auto& [key, pool] : pools_) {
    const auto db = next.databases.find(key.database);
    if (db == next.databases.end()) {
      log::info("reload: database ", key.database,
                " removed: its clients stay until they leave, no new logins");
    } else if (!(db->second == config_.databases.at(key.database))) {
      log::info("reload: pool ", pool->name(), " updated");
      pool->update(db->second);
    }
  }
  config_ = std::move(next);
  stats_.set_sla(std::chrono::milliseconds(config_.teardown.sla_ms));
  pool_context_.message_max = config_.limits.message_max;
  pool_context_.teardown_max_ms = config_.teardown.max_ms;
  loop_monitor_->set_slow_callback_ms(config_.diagnostics.slow_callback_ms);
  log::set_level(log::level_from_name(config_.log_level));
  log::info("reload applied");
}

void Daemon::defer_call(std::function<void()> call) {
  struct Deferred {
    uv_timer_t timer{};
    std::function<void()> call;
  };
  auto* deferred = new Deferred{{}, std::move(call)};
  uv_timer_init(&loop_, &deferred->timer);
  deferred->timer.data = deferred;
  uv_timer_start(
      &deferred->timer,
      [](uv_timer_t* timer) {
        auto* d = static_cast<Deferred*>(timer->data);
        d->call();
        uv_close(reinterpret_cast<uv_handle_t*>(timer),
                 [](uv_handle_t* handle) { delete static_cast<Deferred*>(handle->data); });
      },
      0, 0);
}

// ---- clients -------------------------------------------------------------

void Daemon::accept_client(int fd, Transport transport) {
  const bool refusing = !accepting_logins();
  if (refusing || clients_.size() >= static_cast<std::size_t>(config_.limits.max_client_conn)) {
    std::string error;
    protocol::append_error_response(
        error, protocol::Severity::fatal,
        refusing ? sqlstate::kCannotConnectNow : sqlstate::kTooManyConnections,
        refusing ? "the database system is shutting down" : "sorry, too many clients already");
    // Best effort on a fresh socket: a small write lands in the kernel buffer.
    [[maybe_unused]] const auto written = ::write(fd, error.data(), error.size());
    ::close(fd);
    return;
  }
  const std::uint64_t id = next_client_id_++;
  clients_.push_back(std::make_unique<ClientSession>(*this, id, fd, transport));
  clients_.back()->position = std::prev(clients_.end());
  log::debug("client ", id, ": connected");
}

void Daemon::client_closed(ClientSession& client) {
  if (const auto it = clients_by_cancel_pid_.find(client.cancel_process_id());
      it != clients_by_cancel_pid_.end() && it->second == &client) {
    clients_by_cancel_pid_.erase(it);
  }
  deleter_->defer(std::move(*client.position));
  clients_.erase(client.position);
  if (state_ == ServiceState::draining && clients_.empty()) advance_drain(Clock::now());
}

pool::Pool* Daemon::pool_for(const std::string& database, const std::string& user) {
  const auto db = config_.databases.find(database);
  if (db == config_.databases.end()) return nullptr;
  pool::PoolKey key{database, user};
  auto it = pools_.find(key);
  if (it == pools_.end()) {
    it = pools_.emplace(key, std::make_unique<pool::Pool>(pool_context_, key, db->second)).first;
    it->second->set_paused(state_ == ServiceState::paused);
  }
  return it->second.get();
}

void Daemon::assign_cancel_key(ClientSession& client, std::uint32_t& process_id, std::uint32_t& secret) {
  // The secret must be unguessable: a right key cancels that client's query.
  if (getrandom(&secret, sizeof secret, 0) != sizeof secret) {
    secret = static_cast<std::uint32_t>(cancel_pid_generator_());
  }
  do {
    process_id = cancel_pid_generator_() & 0x7fffffffU;
  } while (process_id == 0 || clients_by_cancel_pid_.contains(process_id));
  clients_by_cancel_pid_[process_id] = &client;
}

void Daemon::cancel(std::uint32_t process_id, std::uint32_t secret) {
  const auto it = clients_by_cancel_pid_.find(process_id);
  if (it == clients_by_cancel_pid_.end() || it->second->cancel_secret() != secret) {
    log::info("cancel request with an unknown key ignored");
    return;
  }
  log::debug("client ", it->second->id(), ": cancel request forwarded");
  it->second->forward_cancel();
}

void Daemon::on_janitor() {
  const auto now = Clock::now();
  for (auto& [key, pool] : pools_) pool->tick(now);
  const std::uint64_t now_ms = uv_now(&loop_);
  for (auto it = clients_.begin(); it != clients_.end();) {
    ClientSession& client = **it++;
    client.check_timeouts(now_ms);
  }
  advance_drain(now);
  if (++janitor_ticks_ % 10 == 0) notify_status();
}

}  // namespace sluice::daemon
