// The control socket's commands, dispatched on the daemon (DESIGN §4).
#include <cmath>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/status_report.h"

namespace sluice::daemon {
namespace {

// One report being put together: a share per worker, then the answer.
struct Gathering {
  ControlCommand command;
  ControlServer::Respond respond;
  std::vector<WorkerReport> shares;
  std::size_t missing;
};

}  // namespace

void Daemon::handle_control(const ControlRequest& request, ControlServer::Respond respond) {
  const auto acknowledge = [this] {
    return nlohmann::json{{"ok", true}, {"state", service_state_name(state_)}};
  };
  switch (request.command) {
    case ControlCommand::status:
    case ControlCommand::pools:
    case ControlCommand::clients:
    case ControlCommand::servers:
    case ControlCommand::teardown:
      return gather_report(request.command, std::move(respond));
    case ControlCommand::drain: {
      const double seconds = request.timeout_s.value_or(config_.drain.timeout_s);
      start_drain(std::chrono::milliseconds(std::llround(seconds * 1000.0)), /*exit_when_done=*/false);
      return respond(acknowledge());
    }
    case ControlCommand::pause:
      if (state_ != ServiceState::running && state_ != ServiceState::paused) {
        return respond({{"error", "cannot pause while " + std::string(service_state_name(state_))}});
      }
      pause();
      return respond(acknowledge());
    case ControlCommand::resume:
      if (state_ != ServiceState::running) resume();
      return respond(acknowledge());
    case ControlCommand::reload:
      reload();
      return respond(
          {{"ok", true}, {"state", service_state_name(state_)}, {"note", "reload started; see the log"}});
    case ControlCommand::shutdown:
      // On a later turn, so that this answer still reaches the caller.
      defer_call([this] { shutdown("control socket"); });
      return respond({{"ok", true}, {"state", "stopping"}});
  }
  respond({{"error", "unhandled command"}});
}

// Each worker takes its share on its own loop and posts it back here; the last
// one to arrive completes the answer.
void Daemon::gather_report(ControlCommand command, ControlServer::Respond respond) {
  auto gathering = std::make_shared<Gathering>(
      Gathering{command, std::move(respond), std::vector<WorkerReport>(workers_.size()), workers_.size()});
  for_each_worker([this, gathering](Worker& worker) {
    auto share = std::make_shared<WorkerReport>(worker_report(worker, gathering->command));
    mailbox_->post([this, gathering, share, index = worker.index()] {
      gathering->shares[index] = std::move(*share);
      if (--gathering->missing > 0) return;
      nlohmann::json answer;
      try {
        answer = combine_reports(*this, gathering->command, std::move(gathering->shares));
      } catch (const std::exception& error) {
        log::error("control command ", command_name(gathering->command), " failed: ", error.what());
        answer = {{"error", std::string("internal error: ") + error.what()}};
      }
      gathering->respond(std::move(answer));
    });
  });
}

}  // namespace sluice::daemon
