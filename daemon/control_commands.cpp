// The control socket's commands, dispatched on the daemon (DESIGN §4).
#include <cmath>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/status_report.h"

namespace sluice::daemon {

nlohmann::json Daemon::handle_control(const ControlRequest& request) {
  const auto acknowledge = [this] {
    return nlohmann::json{{"ok", true}, {"state", service_state_name(state_)}};
  };
  switch (request.command) {
    case ControlCommand::status:
      return status_report(*this);
    case ControlCommand::pools:
      return pools_report(*this);
    case ControlCommand::clients:
      return clients_report(*this);
    case ControlCommand::servers:
      return servers_report(*this);
    case ControlCommand::teardown:
      return teardown_report(*this);
    case ControlCommand::drain: {
      const double seconds = request.timeout_s.value_or(config_.drain.timeout_s);
      start_drain(std::chrono::milliseconds(std::llround(seconds * 1000.0)), /*exit_when_done=*/false);
      return acknowledge();
    }
    case ControlCommand::pause:
      if (state_ != ServiceState::running && state_ != ServiceState::paused) {
        return {{"error", "cannot pause while " + std::string(service_state_name(state_))}};
      }
      pause();
      return acknowledge();
    case ControlCommand::resume:
      if (state_ == ServiceState::running) return acknowledge();
      resume();
      return acknowledge();
    case ControlCommand::reload:
      reload();
      return {{"ok", true}, {"state", service_state_name(state_)}, {"note", "reload started; see the log"}};
    case ControlCommand::shutdown:
      // On a later turn, so that this answer still reaches the caller.
      defer_call([this] { shutdown("control socket"); });
      return {{"ok", true}, {"state", "stopping"}};
  }
  return {{"error", "unhandled command"}};
}

}  // namespace sluice::daemon
