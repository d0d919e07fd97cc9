#include "daemon/upgrade/inherited_sockets.h"

#include <unistd.h>

#include <algorithm>

#include "common/log.h"

namespace sluice::daemon::upgrade {
namespace {

// Only the main thread touches it, and only before the loop runs.
std::vector<std::pair<std::string, int>>& offered() {
  static std::vector<std::pair<std::string, int>> sockets;
  return sockets;
}

auto find(const std::string& key) {
  return std::find_if(offered().begin(), offered().end(),
                      [&key](const auto& entry) { return entry.first == key; });
}

}  // namespace

void offer_inherited_sockets(std::vector<std::pair<std::string, int>> sockets) {
  close_unclaimed_sockets();
  offered() = std::move(sockets);
}

std::optional<int> take_inherited_socket(const std::string& key) {
  const auto it = find(key);
  if (it == offered().end()) return std::nullopt;
  const int fd = it->second;
  offered().erase(it);
  return fd;
}

bool has_inherited_socket(const std::string& key) { return find(key) != offered().end(); }

void close_unclaimed_sockets() {
  for (const auto& [key, fd] : offered()) {
    log::info("upgrade: ", key, " is not in this configuration; closed the inherited socket");
    ::close(fd);
  }
  offered().clear();
}

}  // namespace sluice::daemon::upgrade
