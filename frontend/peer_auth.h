// Peer authentication: the OS user at the other end of a Unix socket.
#pragma once

#include <optional>
#include <string>

namespace sluice::frontend {

// The login name of the process connected to the Unix socket `fd`, from
// SO_PEERCRED; nullopt when the socket is not local or the uid has no name.
std::optional<std::string> peer_user_name(int fd);

}  // namespace sluice::frontend
