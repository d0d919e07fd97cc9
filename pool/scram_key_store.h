// SCRAM pass-through's memory: the keys of the latest SCRAM login a client made for each (database,
// role), which that database's pools use to log in to PostgreSQL as the role when their conninfo
// holds no password. Daemon-wide, shared by the workers: a client logs in on one worker, a
// min_pool_size warm-up or another client's server may open on any. Touched at a SCRAM login and at
// a server connect, never per transaction. Password-equivalent for the role: held only here, in
// memory, never logged or reported (SECURITY.md).
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "auth/scram_client.h"

namespace sluice::pool {

class ScramKeyStore {
 public:
  void remember(const std::string& database, const std::string& role, const auth::ScramKeys& keys);
  [[nodiscard]] std::optional<auth::ScramKeys> find(const std::string& database,
                                                    const std::string& role) const;
  // The server refused these keys: dropped, unless a newer login has replaced them meanwhile.
  void forget(const std::string& database, const std::string& role, const auth::ScramKeys& keys);

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, auth::ScramKeys> keys_;
};

}  // namespace sluice::pool
