#include "daemon/file_limit.h"

#include <sys/resource.h>

namespace sluice::daemon {

namespace {

// The listeners, the control and metrics sockets, each loop's epoll and wake-up descriptors, the
// log and the configuration's files: a generous bound, not a count.
constexpr std::uint64_t kOwnDescriptors = 32;
constexpr std::uint64_t kOwnDescriptorsPerWorker = 4;

std::uint64_t servers_of(const config::DatabaseConfig& database) {
  const config::PoolSettings& pool = database.pool;
  if (pool.max_db_connections > 0) return static_cast<std::uint64_t>(pool.max_db_connections);
  return static_cast<std::uint64_t>(pool.pool_size) + static_cast<std::uint64_t>(pool.reserve_pool_size);
}

}  // namespace

FileLimit raise_file_limit() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return {};
  if (files.rlim_cur < files.rlim_max) {
    rlimit raised = files;
    raised.rlim_cur = raised.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) files = raised;
  }
  return {.soft = static_cast<std::uint64_t>(files.rlim_cur),
          .hard = static_cast<std::uint64_t>(files.rlim_max)};
}

std::uint64_t descriptors_needed(const config::Config& config) {
  std::uint64_t needed = static_cast<std::uint64_t>(config.limits.max_client_conn) + kOwnDescriptors +
                         kOwnDescriptorsPerWorker * static_cast<std::uint64_t>(config.workers);
  for (const auto& [name, database] : config.databases) needed += servers_of(database);
  return needed;
}

std::optional<std::string> file_limit_warning(const FileLimit& limit, const config::Config& config) {
  const std::uint64_t needed = descriptors_needed(config);
  if (limit.soft == 0 || limit.soft >= needed) return std::nullopt;
  return "the file descriptor limit is " + std::to_string(limit.soft) + " (hard limit " +
         std::to_string(limit.hard) + "), below the " + std::to_string(needed) +
         " descriptors at least that limits.max_client_conn (" +
         std::to_string(config.limits.max_client_conn) +
         ") and the databases' servers need: past it new clients wait in the listen backlog and new "
         "server connections fail; raise LimitNOFILE= in the systemd unit, or ulimit -n";
}

}  // namespace sluice::daemon
