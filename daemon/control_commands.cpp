// The control socket's commands, dispatched on the daemon (DESIGN §4).
#include <cmath>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/status_report.h"
#include "daemon/upgrade/successor.h"

namespace sluice::daemon {

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
      if (exiting_) return respond({{"error", "cannot resume: the daemon is exiting"}});
      if (state_ != ServiceState::running) resume();
      return respond(acknowledge());
    case ControlCommand::reload:
      reload();
      return respond(
          {{"ok", true}, {"state", service_state_name(state_)}, {"note", "reload started; see the log"}});
    case ControlCommand::upgrade: {
      const double seconds =
          request.timeout_s.value_or(std::chrono::duration<double>(upgrade::kDefaultReadyTimeout).count());
      return start_upgrade(request.binary.value_or(""),
                           std::chrono::milliseconds(std::llround(seconds * 1000.0)), std::move(respond));
    }
    case ControlCommand::shutdown:
      // On a later turn, so that this answer still reaches the caller.
      defer_call([this] { shutdown("control socket"); });
      return respond({{"ok", true}, {"state", "stopping"}});
  }
  respond({{"error", "unhandled command"}});
}

// Each worker takes its share on its own loop; the last one to arrive completes the answer.
void Daemon::gather_report(ControlCommand command, ControlServer::Respond respond) {
  gather<WorkerReport>([command](const Worker& worker) { return worker_report(worker, command); },
                       [this, command, respond = std::move(respond)](std::vector<WorkerReport> shares) {
                         nlohmann::json answer;
                         try {
                           answer = combine_reports(*this, command, std::move(shares));
                         } catch (const std::exception& error) {
                           log::error("control command ", command_name(command), " failed: ", error.what());
                           answer = {{"error", std::string("internal error: ") + error.what()}};
                         }
                         respond(std::move(answer));
                       });
}

}  // namespace sluice::daemon
