#include "daemon/daemon.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>

#include "common/log.h"
#include "config/config_loader.h"
#include "config/tls_context.h"
#include "daemon/upgrade/predecessor.h"
#include "daemon/upgrade/successor.h"
#include "net/loop_close.h"
#include "protocol/backend_messages.h"
#include "protocol/sqlstate.h"

namespace sluice::daemon {
namespace {

constexpr std::uint64_t kStatusIntervalMs = 1000;
// How long an exiting daemon waits for the control requests and scrapes it has accepted to be answered.
constexpr std::chrono::milliseconds kAnswerGrace{2000};

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

// Which certificate new TLS connections get: after a reload, the operator's proof of the swap.
void log_tls_certificate(const config::Config& config) {
  if (config.tls.context)
    log::info("TLS for new connections: certificate ", config.tls.context->description());
}

// Checked at start and at each reload: max_client_conn and the pools may grow past the limit.
void warn_of_file_limit(const FileLimit& limit, const config::Config& config) {
  if (const auto warning = file_limit_warning(limit, config)) log::warning(*warning);
}

// A database whose pass-through TLS files libpq would refuse: said at start and on each reload, not
// only to the clients that wait for its servers.
void warn_of_server_tls_failures(const config::Config& config) {
  for (const auto& [name, database] : config.databases) {
    const auto& context = database.server_tls.context;
    if (!context || context->failure().empty()) continue;
    std::string failure = context->failure();
    std::replace(failure.begin(), failure.end(), '\n', ' ');
    log::warning("database ", name, ": SCRAM pass-through cannot make TLS to its server: ", failure);
  }
}

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

Daemon::Daemon(config::Config config, std::string config_path,
               std::unique_ptr<upgrade::Predecessor> predecessor)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      executable_(upgrade::running_executable()),
      predecessor_(std::move(predecessor)) {
  uv_loop_init(&loop_);
  reactor_ = std::make_unique<net::SocketReactor>(&loop_);
  mailbox_ = std::make_unique<net::Mailbox>(&loop_);
  const auto count = static_cast<std::size_t>(config_.workers);
  for (std::size_t index = 0; index < count; ++index) {
    // One worker shares this loop; several each get a loop and a thread.
    workers_.push_back(
        std::make_unique<Worker>(*this, index, count, config_, count == 1 ? &loop_ : nullptr, server_ids_));
  }
}

Daemon::~Daemon() {
  // Already stopped unless an exception left run(): then each worker must still close its
  // clients (before its pools) and end its thread.
  for_each_worker([](Worker& worker) { worker.shutdown(); });
  for (auto& worker : workers_) worker->join();
  workers_.clear();
  listeners_.clear();
  control_.reset();
  metrics_.reset();
  successor_.reset();
  predecessor_.reset();
  mailbox_.reset();
  net::close_loop(&loop_);
}

// Order matters: signal handlers first (a SIGTERM during start-up drains
// rather than kills), then the control socket, then the client listeners, so
// that once clients can connect, operators can too.
int Daemon::run() {
  file_limit_ = raise_file_limit();  // before the first descriptor a client takes
  install_signal_handlers();
  ControlServer::Settings control_settings;
  control_settings.path = config_.control.socket;
  control_settings.group = config_.control.group;
  control_settings.max_request_bytes = static_cast<std::size_t>(config_.limits.control_request_max);
  auto control = ControlServer::open(&loop_, std::move(control_settings),
                                     [this](const ControlRequest& request, ControlServer::Respond respond) {
                                       handle_control(request, std::move(respond));
                                     });
  if (!control) return startup_failed(control.error());
  control_ = std::move(*control);
  if (config_.metrics.listen) {
    auto metrics =
        metrics::MetricsServer::open(&loop_, {.listen = *config_.metrics.listen},
                                     [this](metrics::Format format, metrics::MetricsServer::Respond respond) {
                                       scrape_metrics(format, std::move(respond));
                                     });
    if (!metrics) return startup_failed(metrics.error());
    metrics_ = std::move(*metrics);
  }

  auto on_accept = [this](int fd, Transport transport) { accept_client(fd, transport); };
  // TCP first: once the Unix socket takes connections, so does the TCP port (a client that waits for
  // the socket file, as a test harness or a script does, may use either).
  if (config_.listen.tcp) {
    auto tcp_listener = Listener::open_tcp(&loop_, *config_.listen.tcp, on_accept);
    if (!tcp_listener) return startup_failed(tcp_listener.error());
    listeners_.push_back(std::move(*tcp_listener));
    if (config_.auth.type == config::AuthType::trust && config_.auth.type_written) {
      log::warning("auth.type \"trust\": anyone who can reach ", *config_.listen.tcp,
                   " logs in as any role without a password");
    } else if (config_.auth.type == config::AuthType::trust) {
      log::warning("TCP clients without TLS on ", *config_.listen.tcp,
                   " are refused: they need a password method, or auth.type \"trust\" written out");
    }
  }
  auto unix_listener = Listener::open_unix(&loop_, client_socket_path(config_.listen), 0777, on_accept);
  if (!unix_listener) return startup_failed(unix_listener.error());
  listeners_.push_back(std::move(*unix_listener));

  uv_timer_init(&loop_, &status_timer_);
  status_timer_.data = this;
  uv_timer_start(
      &status_timer_,
      [](uv_timer_t* t) {
        auto* daemon = static_cast<Daemon*>(t->data);
        daemon->notify_status();
        daemon->report_upgrade_progress();
        daemon->exit_if_drained();  // moves still unsettled at the drain deadline hold it no longer
      },
      kStatusIntervalMs, kStatusIntervalMs);

  for (auto& worker : workers_) worker->start();
  if (!take_over_from_predecessor()) return 1;
  for (const auto& listener : listeners_) log::info("listening on ", listener->name());
  log_tls_certificate(config_);
  warn_of_server_tls_failures(config_);
  log::info("file descriptor limit: ", file_limit_.soft, " (hard limit ", file_limit_.hard, ")");
  warn_of_file_limit(file_limit_, config_);
  if (workers_.size() > 1) log::info(workers_.size(), " worker loops, each on its own thread");
  start_watchdog();
  notify_status();
  reactor_->run();
  return exit_code_;
}

void Daemon::install_signal_handlers() {
  for (const int signum : {SIGINT, SIGTERM, SIGHUP, SIGUSR2}) {
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
    case SIGUSR2:  // Odyssey's signal for the same
      return start_upgrade("", upgrade::kDefaultReadyTimeout, nullptr);
    default:
      return shutdown("SIGINT");
  }
}

// ---- service state -------------------------------------------------------

void Daemon::for_each_worker(const std::function<void(Worker&)>& call) {
  for (auto& worker : workers_) {
    worker->post([&target = *worker, call] { call(target); });
  }
}

void Daemon::pause() {
  if (state_ != ServiceState::running) return;
  state_ = ServiceState::paused;
  log::info("paused: no new scopes are granted; scopes in flight finish");
  for_each_worker([](Worker& worker) { worker.set_paused(true); });
}

void Daemon::resume() {
  if (state_ == ServiceState::running || state_ == ServiceState::stopped || exiting_) return;
  // After a drain the listeners are still open (they refuse with an error): back to running.
  state_ = ServiceState::running;
  drain_.reset();
  log::info("resumed");
  for_each_worker([](Worker& worker) {
    worker.end_drain();
    worker.set_paused(false);
  });
}

void Daemon::start_drain(std::chrono::milliseconds timeout, bool exit_when_done,
                         std::chrono::milliseconds grace) {
  if (state_ == ServiceState::draining || state_ == ServiceState::drained) {
    drain_->exit_when_done = drain_->exit_when_done || exit_when_done;
    return exit_if_drained();
  }
  if (state_ == ServiceState::stopped) return;
  if (successor_) successor_->abort("was called off: a drain started");
  const auto now = Clock::now();
  drain_ = DrainProgress{now, now + timeout, exit_when_done, ++drain_generation_};
  state_ = ServiceState::draining;
  systemd_.stopping();
  log::info("drain started: ", client_count(), " clients, deadline in ", timeout.count(), " ms");
  // After a live upgrade's handover the clients that can move go to the new process.
  const bool hand_over = handed_over();
  for_each_worker([deadline = drain_->deadline, generation = drain_->generation, grace, hand_over](
                      Worker& worker) { worker.start_drain(deadline, generation, grace, hand_over); });
}

// Workers report on this loop's mailbox, so a report is never handled inside
// the worker callback that sent it.
void Daemon::worker_drained(std::uint64_t generation, int forced) {
  mailbox_->post([this, generation, forced] { on_worker_drained(generation, forced); });
}

void Daemon::worker_settled(std::uint64_t generation) {
  mailbox_->post([this, generation] { on_worker_settled(generation); });
}

void Daemon::worker_failed(std::size_t index, std::string what) {
  mailbox_->post([this, index, what = std::move(what)] {
    log::error("worker ", index, " failed: ", what);
    exit_code_ = 70;  // EX_SOFTWARE, as main() gives
    shutdown("a worker failed");
  });
}

void Daemon::on_worker_drained(std::uint64_t generation, int forced) {
  if (!drain_ || drain_->generation != generation) return;  // a drain since resumed
  drain_->forced += forced;
  if (++drain_->workers_drained < workers_.size() || state_ != ServiceState::draining) return;
  state_ = ServiceState::drained;
  log::info("drained: every client has left (", drain_->forced, " scopes forced at the deadline)");
}

void Daemon::on_worker_settled(std::uint64_t generation) {
  if (!drain_ || drain_->generation != generation) return;
  ++drain_->workers_settled;
  exit_if_drained();
}

void Daemon::exit_if_drained() {
  // After a live upgrade, not before the clients handed over have all left for the new process.
  const bool serving = handed_over();
  if (state_ == ServiceState::stopped || exiting_ || !drain_ || !drain_->exit_when_done ||
      drain_->workers_settled != workers_.size())
    return;
  if (serving && !successor_->flushed()) return;
  // Until the drain deadline, the clients the new process has not answered for are kept, to be
  // drained from here should it die; after it, they are its.
  if (serving && !unconfirmed_moves_.empty() && Clock::now() < drain_->deadline) return;
  if (serving) {
    if (!unconfirmed_moves_.empty()) {
      log::warning("upgrade: the new process did not answer for ", unconfirmed_moves_.size(),
                   " clients by the drain deadline: left to it");
    }
    unconfirmed_moves_.forget_all();
    log::info("upgrade: ", clients_moved_out_, " clients moved to pid ", successor_->pid(),
              ", the others drained (", drain_->forced, " scopes forced at the deadline)");
  }
  exiting_ = true;
  // Control requests and scrapes already accepted get their answers first; the workers stay up
  // meanwhile, for a `status` or a scrape gathers from them.
  auto left = std::make_shared<int>(1 + (control_ ? 1 : 0) + (metrics_ ? 1 : 0));
  const auto one_finished = [this, left] {
    if (--*left > 0) return;
    defer_call([this] {
      if (state_ != ServiceState::stopped) stop_loop(false);
    });
  };
  if (control_) control_->finish(kAnswerGrace, one_finished);
  if (metrics_) metrics_->finish(kAnswerGrace, one_finished);
  one_finished();
}

void Daemon::notify_status() {
  if (!systemd_.enabled()) return;
  systemd_.status(std::string(service_state_name(state_)) + ": " + std::to_string(client_count()) +
                  " clients, " + std::to_string(workers_.size()) +
                  (workers_.size() == 1 ? " worker" : " workers"));
}

// WATCHDOG=1 comes from a main-loop timer, and only while every worker's
// janitor has run lately: a stuck loop, main or worker, stops it and systemd restarts us.
void Daemon::start_watchdog() {
  const auto interval = systemd_.watchdog_interval();
  if (!interval) return;
  const auto ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, interval->count() / 1000));
  uv_timer_init(&loop_, &watchdog_);
  watchdog_.data = this;
  uv_timer_start(
      &watchdog_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->on_watchdog(); }, 0, ms);
}

void Daemon::on_watchdog() {
  const std::uint64_t now_ms = uv_hrtime() / 1000000;
  const auto interval_ms = static_cast<std::uint64_t>(systemd_.watchdog_interval()->count() / 1000);
  for (const auto& worker : workers_) {
    const std::uint64_t beat = worker->heartbeat_ms();
    if (now_ms > beat && now_ms - beat > interval_ms) {
      return log::warning("watchdog: worker ", worker->index(), " has not run for ", now_ms - beat, " ms");
    }
  }
  systemd_.watchdog();
}

void Daemon::shutdown(std::string_view reason) {
  if (state_ == ServiceState::stopped) return;
  log::info("shutting down: ", reason);
  systemd_.stopping();
  stop_loop(true);
}

// Closing a server ends its backend, and PostgreSQL rolls back what it had open.
void Daemon::stop_loop(bool fail_clients) {
  state_ = ServiceState::stopped;
  listeners_.clear();
  control_.reset();
  metrics_.reset();
  for_each_worker([fail_clients](Worker& worker) { fail_clients ? worker.shutdown() : worker.stop(); });
  uv_timer_stop(&status_timer_);
  uv_timer_stop(&watchdog_);
  for (auto& signal : signals_) uv_signal_stop(signal.get());
  log::info("stopped");
  reactor_->stop();
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
          daemon.record_reload({false, "the configuration could not be read", Clock::now()});
          return log::error("reload failed: the configuration could not be read");
        }
        if (!*w->result) {
          daemon.record_reload({false, w->result->error(), Clock::now()});
          return log::error("reload rejected, configuration unchanged: ", w->result->error());
        }
        daemon.apply_config(std::move(w->result->value()));
        daemon.record_reload({true, "", Clock::now()});
      });
}

void Daemon::record_reload(ReloadOutcome outcome) {
  ++(outcome.ok ? reload_counts_.ok : reload_counts_.failed);
  last_reload_ = std::move(outcome);
}

void Daemon::apply_config(config::Config next) {
  if (next.listen != config_.listen || next.control != config_.control || next.metrics != config_.metrics) {
    log::warning(
        "reload: listen, control and metrics settings change only on restart; kept the running ones");
    next.listen = config_.listen;
    next.control = config_.control;
    next.metrics = config_.metrics;
  }
  if (next.workers != config_.workers) {
    log::warning("reload: workers changes only on restart; kept ", config_.workers);
    next.workers = config_.workers;
  }
  for (const auto& [name, database] : config_.databases) {
    const auto db = next.databases.find(name);
    if (db == next.databases.end()) {
      log::info("reload: database ", name, " removed: its clients stay until they leave, no new logins");
    } else if (!(db->second == database)) {
      log::info("reload: database ", name, " updated");
    }
  }
  config_ = std::move(next);
  for_each_worker([config = config_](Worker& worker) { worker.apply_config(config); });
  log::set_level(log::level_from_name(config_.log_level));
  log_tls_certificate(config_);
  warn_of_server_tls_failures(config_);
  file_limit_ = raise_file_limit();  // the hard limit may have been raised since (prlimit)
  warn_of_file_limit(file_limit_, config_);
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
  if (refusing || client_count() >= static_cast<std::size_t>(config_.limits.max_client_conn)) {
    const std::string_view code = refusing ? sqlstate::kCannotConnectNow : sqlstate::kTooManyConnections;
    std::string error;
    protocol::append_error_response(
        error, protocol::Severity::fatal, code,
        refusing ? "the database system is shutting down" : "sorry, too many clients already");
    refused_at_accept_.login(metrics::login_result_of(code));
    refused_at_accept_.error_sent(code);
    // Best effort on a fresh socket: a small write lands in the kernel buffer.
    [[maybe_unused]] const auto written = ::write(fd, error.data(), error.size());
    ::close(fd);
    return;
  }
  Worker* least_busy = workers_.front().get();
  for (const auto& worker : workers_) {
    if (worker->client_count() < least_busy->client_count()) least_busy = worker.get();
  }
  least_busy->count_incoming_client();
  least_busy->post([&worker = *least_busy, fd, transport, id = next_client_id_++] {
    worker.adopt_client(fd, transport, id);
  });
}

std::size_t Daemon::client_count() const {
  std::size_t clients = 0;
  for (const auto& worker : workers_) clients += worker->client_count();
  return clients;
}

void Daemon::route_cancel(std::uint32_t process_id, std::uint32_t secret) {
  Worker& holder = *workers_[process_id % workers_.size()];
  holder.post([&holder, process_id, secret] { holder.cancel(process_id, secret); });
}

}  // namespace sluice::daemon
