#include "daemon/client_counts.h"

namespace sluice::daemon {

using frontend::ClientState;

void ClientCounts::add(const frontend::ClientSession& client) {
  switch (client.state()) {
    case ClientState::active:
      ++active;
      break;
    case ClientState::idle:
      ++idle;
      break;
    case ClientState::waiting:
      ++waiting;
      break;
    case ClientState::handshake:
    case ClientState::login:
      ++login;
      break;
    case ClientState::closing:
      return;
  }
  ++total;
  if (!client.pinned_because().empty()) ++pinned;
}

}  // namespace sluice::daemon
