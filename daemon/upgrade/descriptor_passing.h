// Handover messages over a Unix socket pair, with descriptors attached
// (SCM_RIGHTS). The old process only sends this way from its loop (one short
// message on an empty socket); the new process blocks on receive only during
// its own start, before it serves anyone.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "daemon/upgrade/handover_protocol.h"

namespace sluice::daemon::upgrade {

struct Received {
  nlohmann::json message;
  std::vector<int> descriptors;  // close-on-exec, now owned by the caller
};

// One sendmsg of `bytes` with `descriptors` attached, never waiting: the number of bytes sent (the
// descriptors go with the first), or -errno.
ssize_t send_with_descriptors(int socket, std::string_view bytes, std::span<const int> descriptors);
// One recvmsg into `buffer`, never waiting: the number of bytes read (0 at the end of the stream)
// or -errno. The descriptors that came with them (close-on-exec) are appended to `into`; more than
// kMaxDescriptors at once is -EMSGSIZE (those that came are appended all the same).
ssize_t receive_with_descriptors(int socket, std::span<char> buffer, std::vector<int>& into);

// What a received descriptor is instead of a connection (a device, a pipe, a datagram or listening
// socket: "a pipe"), or nullopt when it is a stream socket of a family a client or server uses.
// The old process is trusted with nothing: the new one watches and writes only such a socket.
std::optional<std::string> not_a_connection(int fd);

// One sendmsg of the whole message with `descriptors` attached; never waits:
// a message the socket cannot take at once is an error.
Result<bool> send_message(int socket, const nlohmann::json& message, std::span<const int> descriptors = {});

// Blocks until a whole message has arrived or `deadline` passes. Descriptors
// that arrive with it are kept; an error closes them.
Result<Received> receive_message(int socket, MessageReader& reader,
                                 std::chrono::steady_clock::time_point deadline);

}  // namespace sluice::daemon::upgrade
