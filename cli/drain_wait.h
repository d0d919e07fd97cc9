// `sluicectl drain --wait`: polls status until the daemon has drained, with a
// live progress line, and turns the outcome into the exit code.
#pragma once

#include <ostream>
#include <string>

#include "cli/control_client.h"

namespace sluice::cli {

struct DrainWaitOptions {
  std::string socket_path;
  bool json = false;  // final status as JSON on stdout; progress goes to stderr
};

// `client` is the connection the drain request went over. Returns the exit
// code: 0 drained cleanly, 5 drained with scopes forced at the deadline.
int wait_for_drain(ControlClient client, const DrainWaitOptions& options);

}  // namespace sluice::cli
