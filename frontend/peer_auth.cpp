#include "frontend/peer_auth.h"

#include <pwd.h>
#include <sys/socket.h>

#include <vector>

namespace sluice::frontend {

std::optional<std::string> peer_user_name(int fd) {
  ucred credentials{};
  socklen_t size = sizeof credentials;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0 || size != sizeof credentials) {
    return std::nullopt;
  }
  // Local passwd lookups are quick; NSS setups that reach the network would
  // want this on the thread pool.
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwuid_r(credentials.uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return std::string(found->pw_name);
}

}  // namespace sluice::frontend
