// One control-socket request: a JSON object such as {"cmd": "drain",
// "timeout_s": 10}. Pure parsing, no I/O, so it can be fuzzed.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sluice::daemon {

enum class ControlCommand {
  status,
  pools,
  clients,
  servers,
  teardown,
  drain,
  pause,
  resume,
  reload,
  shutdown,
  upgrade
};

struct ControlRequest {
  ControlCommand command = ControlCommand::status;
  // drain: absent (or null) means the configured drain.timeout_s; upgrade: how long the new
  // process has to report ready, absent means 30 s.
  std::optional<double> timeout_s;
  std::optional<std::string> binary;  // upgrade only: the sluiced to start instead of this one's own

  bool operator==(const ControlRequest&) const = default;
};

// Brackets nested deeper than this are refused before the JSON parser sees them.
inline constexpr int kMaxControlNesting = 64;
// drain's timeout_s above this is refused, so the daemon never converts an
// absurd double into a duration (one year).
inline constexpr double kMaxDrainTimeoutS = 365.0 * 24 * 3600;

// Parses one request line (without its newline). Every error is a message
// suitable for {"error": ...}; nothing is thrown.
Result<ControlRequest> parse_control_request(std::string_view line);

std::string command_name(ControlCommand command);

}  // namespace sluice::daemon
