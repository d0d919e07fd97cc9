// libFuzzer target: one control-socket request line, as read from the socket.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/control_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const auto request = sluice::daemon::parse_control_request(line);
  if (!request) return 0;
  // What the daemon relies on: a known command, and a timeout (drain's, upgrade's) it can
  // safely turn into a duration. A violation aborts, so libFuzzer keeps it.
  if (sluice::daemon::command_name(request->command) == "unknown") std::abort();
  if (request->timeout_s) {
    const double seconds = *request->timeout_s;
    const bool takes_timeout = request->command == sluice::daemon::ControlCommand::drain ||
                               request->command == sluice::daemon::ControlCommand::upgrade;
    if (!takes_timeout || !std::isfinite(seconds) || seconds < 0 ||
        seconds > sluice::daemon::kMaxDrainTimeoutS) {
      std::abort();
    }
  }
  return 0;
}
