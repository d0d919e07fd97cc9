#include "daemon/upgrade/unconfirmed_moves.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "protocol/backend_messages.h"
#include "protocol/sqlstate.h"

namespace sluice::daemon::upgrade {

void drain_client_socket(int socket) {
  std::string error;
  protocol::append_error_response(error, protocol::Severity::fatal, sqlstate::kAdminShutdown,
                                  "terminating connection due to administrator command");
  // The client was at rest when it moved: its send buffer is empty and takes the message whole.
  // Should the new process have written to it meanwhile, the message may not fit: closed anyway.
  [[maybe_unused]] const ssize_t sent =
      ::send(socket, error.data(), error.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::close(socket);
}

std::uint64_t UnconfirmedMoves::hold(int client_socket) {
  const std::uint64_t move = next_move_++;
  held_.emplace(move, client_socket);
  return move;
}

void UnconfirmedMoves::settle(std::uint64_t move, bool adopted) {
  const auto found = held_.find(move);
  if (found == held_.end()) return;  // an answer for no move of ours: nothing to do
  const int socket = found->second;
  held_.erase(found);
  if (adopted) {
    ::close(socket);
  } else {
    drain_client_socket(socket);
  }
}

void UnconfirmedMoves::drain_all() {
  for (const auto& [move, socket] : held_) drain_client_socket(socket);
  held_.clear();
}

void UnconfirmedMoves::forget_all() {
  for (const auto& [move, socket] : held_) ::close(socket);
  held_.clear();
}

}  // namespace sluice::daemon::upgrade
