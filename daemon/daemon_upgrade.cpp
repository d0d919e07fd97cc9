// Live upgrade, the Daemon's part (README "Live upgrade"): the old process
// starts its successor and, once that one serves, stops accepting and drains;
// the new process takes the listening sockets over before it serves. The
// handover itself lives in daemon/upgrade/.
#include <unistd.h>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/upgrade/descriptor_passing.h"
#include "daemon/upgrade/inherited_sockets.h"
#include "daemon/upgrade/predecessor.h"
#include "daemon/upgrade/successor.h"
#include "frontend/moved_client.h"

namespace sluice::daemon {
namespace {

// After the handover the old process lets the clients it accepted last log in and run their
// first transaction (a client that connects for one transaction, as pgbench -C, must not be
// closed between its login and its query), then drains as SIGTERM does.
constexpr std::chrono::milliseconds kHandoverGrace{1000};

}  // namespace

bool Daemon::handed_over() const {
  return successor_ && successor_->state() == upgrade::Successor::State::serving;
}

std::vector<Listener*> Daemon::all_listeners() {
  std::vector<Listener*> all;
  for (auto& listener : listeners_) all.push_back(listener.get());
  if (control_) all.push_back(&control_->listener());
  if (metrics_) all.push_back(&metrics_->listener());
  return all;
}

void Daemon::start_upgrade(const std::string& binary, std::chrono::milliseconds ready_timeout,
                           std::function<void(nlohmann::json)> done) {
  const auto refuse = [&done](const std::string& reason) {
    log::warning("upgrade refused: ", reason);
    if (done) done({{"error", "upgrade refused: " + reason}});
  };
  if (successor_) {
    return refuse(handed_over()
                      ? "this process has already handed over to pid " + std::to_string(successor_->pid())
                      : "an upgrade is already under way (pid " + std::to_string(successor_->pid()) + ")");
  }
  if (predecessor_) {
    return refuse("the previous upgrade is not finished: the old process (pid " +
                  std::to_string(predecessor_->pid()) + ") still drains");
  }
  if (state_ != ServiceState::running)
    return refuse("the daemon is " + std::string(service_state_name(state_)));

  std::vector<upgrade::HandedOverSocket> sockets;
  for (Listener* listener : all_listeners()) sockets.push_back({listener->key(), listener->fd()});
  upgrade::SuccessorLaunch launch{binary.empty() ? executable_ : binary, config_path_, ready_timeout};
  upgrade::Successor::Events events;
  events.serving = [this, done](pid_t pid) { on_successor_serving(pid, done); };
  events.failed = [this, done](const std::string& reason) {
    if (done) done({{"error", "upgrade failed: the new process " + reason + "; this process serves on"}});
    defer_call([this] { successor_.reset(); });  // not inside the Successor's own callback
  };
  // The new process died after it took over: the clients still here leave as by a drain (57P01 at
  // their boundary) rather than into a channel nobody reads. The flag stops moves at once; the
  // workers then sweep those that waited at rest.
  events.lost = [this] {
    successor_lost_.store(true, std::memory_order_release);
    log::error("upgrade: the new process is gone; the clients still here are drained");
    // Those it had not taken yet (in the channel, or on its way to a worker) too: from here.
    unconfirmed_moves_.drain_all();
    for_each_worker([](Worker& worker) { worker.stop_handing_over(); });
    // Workers that had settled already report nothing more: the exit waited only for the channel.
    defer_call([this] { exit_if_drained(); });
  };
  events.message = [this](const nlohmann::json& message) {
    const std::string type = upgrade::message_type(message);
    if (type == "moved") return on_move_settled(message);
    if (type != "cancel") return;
    route_cancel(message.value("process_id", std::uint32_t{0}), message.value("secret", std::uint32_t{0}));
  };
  events.undelivered = [this](std::uint64_t move) {
    log::warning("upgrade: a client could not be handed over (the kernel refused its socket): drained");
    unconfirmed_moves_.settle(move, /*adopted=*/false);
    exit_if_drained();
  };
  auto successor = upgrade::Successor::launch(&loop_, launch, std::move(sockets), std::move(events));
  if (!successor) {
    log::warning("upgrade failed: ", successor.error());
    if (done) done({{"error", "upgrade failed: " + successor.error() + "; this process serves on"}});
    return;
  }
  successor_ = std::move(*successor);
}

// The new process accepts on the same sockets now: stop accepting here, let it
// speak for the service, and drain (SIGTERM's drain: exit once done).
void Daemon::on_successor_serving(pid_t pid, const std::function<void(nlohmann::json)>& done) {
  for (Listener* listener : all_listeners()) listener->hand_over();
  systemd_.stop_notifying();
  uv_timer_stop(&watchdog_);
  log::info("upgrade: handed over to pid ", pid, "; moving or draining ", client_count(), " clients");
  successor_->on_flushed([this] { exit_if_drained(); });
  if (done) done({{"ok", true}, {"state", "upgraded"}, {"pid", pid}, {"old_pid", ::getpid()}});
  start_drain(std::chrono::seconds(config_.drain.timeout_s), /*exit_when_done=*/true, kHandoverGrace);
  report_upgrade_progress();
}

void Daemon::report_upgrade_progress() {
  if (!handed_over()) return;
  successor_->send({{"type", "progress"},
                    {"state", service_state_name(state_)},
                    {"clients", client_count()},
                    {"forced", drain_ ? drain_->forced : 0},
                    {"moved", clients_moved_out_}});
}

void Daemon::hand_over_client(nlohmann::json message, std::vector<int> descriptors, int kept) {
  mailbox_->post([this, descriptors = std::move(descriptors), message = std::move(message), kept]() mutable {
    const std::uint64_t move = unconfirmed_moves_.hold(kept);
    message["move"] = move;
    // Sent or not, this process's copies of the sockets are closed (Successor::send closes them too).
    if (!successor_) {
      for (const int fd : descriptors) ::close(fd);
    }
    const bool sent = successor_ && successor_->send(message, std::move(descriptors), move);
    if (!sent) {
      log::warning("upgrade: a client could not be handed over (the new process is gone): drained");
      unconfirmed_moves_.settle(move, /*adopted=*/false);
    }
  });
}

// The new process says what became of a client handed over: adopted (its copy of the socket here
// closes), or declined (drained from here, as it would have been without the upgrade).
void Daemon::on_move_settled(const nlohmann::json& message) {
  const auto move = message.find("move");
  const auto adopted = message.find("adopted");
  if (move == message.end() || !move->is_number_unsigned() || adopted == message.end() ||
      !adopted->is_boolean())
    return log::warning("upgrade: the new process sent a malformed \"moved\" message: ignored");
  if (adopted->get<bool>()) {
    ++clients_moved_out_;
  } else {
    log::info("upgrade: the new process declined a client: drained");
  }
  unconfirmed_moves_.settle(move->get<std::uint64_t>(), adopted->get<bool>());
  report_upgrade_progress();
  exit_if_drained();
}

void Daemon::settle_moved_client(std::uint64_t move, bool adopted) {
  mailbox_->post([this, move, adopted] {
    if (predecessor_) predecessor_->report_move(move, adopted);
  });
}

void Daemon::adopt_moved_client(const nlohmann::json& state, std::vector<int> descriptors,
                                std::uint64_t move) {
  auto moved = frontend::moved_client_from_json(state);
  if (moved && descriptors.size() != (moved->server ? 2U : 1U))
    moved = fail("moved client refused: it came with " + std::to_string(descriptors.size()) + " sockets");
  for (std::size_t i = 0; moved && i < descriptors.size(); ++i) {
    if (auto what = upgrade::not_a_connection(descriptors[i])) {
      moved = fail(std::string("moved client refused: its ") + (i == 0 ? "socket" : "server's socket") +
                   " is not a connected stream socket but " + *what);
    }
  }
  if (!moved) {
    for (const int fd : descriptors) ::close(fd);
    log::warning("upgrade: ", moved.error());
    return predecessor_->report_move(move, /*adopted=*/false);  // the old process drains it
  }
  ++clients_moved_in_;
  // The worker its cancel key names, as for a key given out here.
  Worker& worker = *workers_[moved->cancel_process_id % workers_.size()];
  worker.count_incoming_client();
  worker.post([&worker, descriptors = std::move(descriptors),
               moved = std::make_shared<frontend::MovedClient>(std::move(*moved)), id = next_client_id_++,
               move] { worker.adopt_moved_client(descriptors, std::move(*moved), id, move); });
}

nlohmann::json Daemon::upgrade_report() const {
  if (predecessor_) {
    nlohmann::json report = predecessor_->report();
    report["moved_in"] = clients_moved_in_;
    return report;
  }
  if (!successor_) return nullptr;
  const bool serving = handed_over();
  return {{"role", "predecessor"},
          {"new_pid", successor_->pid()},
          {"state", serving ? "handed over" : "starting"},
          {"clients_left", client_count()},
          {"moved", clients_moved_out_},
          {"forced", drain_ ? drain_->forced : 0}};
}

void Daemon::cancel_unknown_key(std::uint32_t process_id, std::uint32_t secret) {
  mailbox_->post([this, process_id, secret] {
    if (!predecessor_) return log::info("cancel request with an unknown key ignored");
    log::debug("cancel request with a key of the old process: forwarded to it");
    predecessor_->forward_cancel(process_id, secret);
  });
}

// Before this returns true nothing was accepted here; after it, this process serves
// and the old one no longer accepts.
bool Daemon::take_over_from_predecessor() {
  if (!predecessor_) {
    systemd_.ready();
    return true;
  }
  upgrade::close_unclaimed_sockets();
  if (auto go = predecessor_->report_ready(); !go) {
    log::error("upgrade: not serving: ", go.error());
    for (Listener* listener : all_listeners()) listener->hand_over();  // still the old process's
    return false;
  }
  systemd_.ready_as_main_process(::getpid());
  predecessor_->attach(
      &loop_, [this] { defer_call([this] { predecessor_.reset(); }); },
      [this](const nlohmann::json& state, std::vector<int> descriptors, std::uint64_t move) {
        adopt_moved_client(state, std::move(descriptors), move);
      });
  log::info("upgrade: serving; the old process hands its clients over");
  return true;
}

int Daemon::startup_failed(const std::string& reason) {
  log::error(reason);
  if (predecessor_) {
    // The sockets opened so far may be the old process's: leave their files alone.
    for (Listener* listener : all_listeners()) listener->hand_over();
    predecessor_->report_failure(reason);
  }
  return 1;
}

}  // namespace sluice::daemon
