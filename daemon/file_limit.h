// How many descriptors sluiced may hold (RLIMIT_NOFILE), and whether that is enough for its
// configuration. Each client holds one, each server connection another: past the limit, accept()
// fails and new clients wait in the listen backlog until descriptors free up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"

namespace sluice::daemon {

struct FileLimit {
  std::uint64_t soft = 0;  // what open() and accept() are held to
  std::uint64_t hard = 0;  // how far the soft limit may be raised
};

// Raises the soft limit to the hard one, and returns the limits then in force. The soft limit's
// usual default (1024) is kept low for programs that pass descriptors to select(), whose sets
// stop at 1024; systemd's advice to programs that need more is to raise it themselves, as this
// does. sluiced polls with epoll (libuv) and libpq with poll(): neither has that bound.
FileLimit raise_file_limit();

// The fewest descriptors a configuration may need at once: a client each up to
// limits.max_client_conn, a server each up to every database's budget (max_db_connections when
// set, else pool_size plus reserve_pool_size: one pool's, where each user, set of startup settings
// and worker has a pool of its own), and some for sluiced's own sockets, loops and files.
std::uint64_t descriptors_needed(const config::Config& config);

// A warning when `limit` is below the fewest `config` may need, naming both and what to do; none when
// it is enough.
std::optional<std::string> file_limit_warning(const FileLimit& limit, const config::Config& config);

}  // namespace sluice::daemon
