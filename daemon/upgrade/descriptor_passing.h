// Handover messages over a Unix socket pair, with descriptors attached
// (SCM_RIGHTS). The old process only sends this way from its loop (one short
// message on an empty socket); the new process blocks on receive only during
// its own start, before it serves anyone.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "common/result.h"
#include "daemon/upgrade/handover_protocol.h"

namespace sluice::daemon::upgrade {

struct Received {
  nlohmann::json message;
  std::vector<int> descriptors;  // close-on-exec, now owned by the caller
};

// One sendmsg of the whole message with `descriptors` attached; never waits:
// a message the socket cannot take at once is an error.
Result<bool> send_message(int socket, const nlohmann::json& message, std::span<const int> descriptors = {});

// Blocks until a whole message has arrived or `deadline` passes. Descriptors
// that arrive with it are kept; an error closes them.
Result<Received> receive_message(int socket, MessageReader& reader,
                                 std::chrono::steady_clock::time_point deadline);

}  // namespace sluice::daemon::upgrade
