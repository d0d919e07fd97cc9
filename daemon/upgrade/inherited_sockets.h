// Listening sockets this process received from the one it replaces (live
// upgrade), by listener key ("unix:<path>", "tcp:<host:port>"). Listener::open_*
// takes a socket from here instead of binding: no unlink, no "address in use".
// Main thread only, during start-up.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::daemon::upgrade {

// The sockets the old process sent, each with its key; this process owns them now.
void offer_inherited_sockets(std::vector<std::pair<std::string, int>> sockets);
// The socket for `key`, taken (ownership passes to the caller); nullopt when none was inherited.
std::optional<int> take_inherited_socket(const std::string& key);
[[nodiscard]] bool has_inherited_socket(const std::string& key);
// Closes what this configuration did not claim (a listener it no longer has).
void close_unclaimed_sockets();

}  // namespace sluice::daemon::upgrade
