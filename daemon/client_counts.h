// Clients by state, as the status and pools reports and /metrics show them.
#pragma once

#include "frontend/client_session.h"

namespace sluice::daemon {

struct ClientCounts {
  int active = 0, idle = 0, waiting = 0, login = 0, total = 0;
  int pinned = 0;  // keep their server between transactions (any state above)

  // Counts one client; a closing one is counted nowhere.
  void add(const frontend::ClientSession& client);
};

}  // namespace sluice::daemon
