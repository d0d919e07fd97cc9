// auth.query: a role's secret looked up on the server, for roles auth.file does not list. The
// query (PgBouncer's default: SELECT usename, passwd FROM pg_shadow WHERE usename=$1) runs on a
// server connection of auth.user from the pool of the database the client asked for, as
// sluiced's own query, so it never blocks the loop and reuses the pool's connects, retries and
// timeouts. Answers, "no such role" included, are cached per (database, role) for auth.cache_s,
// and clients asking for the same role meanwhile share one query. One per worker: no locks.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "auth/secret.h"
#include "net/deferred_deleter.h"

namespace sluice::daemon {
class Worker;
}  // namespace sluice::daemon

namespace sluice::frontend {

// What the lookup found: a secret, or why there is none (for the log, never the client).
struct LookedUpSecret {
  std::optional<auth::Secret> secret;
  std::string why_none;
  bool failed = false;  // the query could not run: the client is told, not given a mock exchange
};

class SecretLookup {
 public:
  using Done = std::function<void(const LookedUpSecret&)>;
  // The caller keeps it while it waits; dropping it (a client that left) cancels the callback.
  class Request;
  using RequestPtr = std::shared_ptr<Request>;

  explicit SecretLookup(daemon::Worker& worker);
  ~SecretLookup();  // ends the lookups in flight (their scopes go back to the pools)
  SecretLookup(const SecretLookup&) = delete;
  SecretLookup& operator=(const SecretLookup&) = delete;

  // Calls `done` at once from the cache, or later; never after the RequestPtr is dropped.
  RequestPtr find(const std::string& database, const std::string& user, Done done);
  // Reload: secrets may have changed on the server, auth.query or auth.user too.
  void forget_cached() { cache_.clear(); }

 private:
  class Query;
  using Key = std::pair<std::string, std::string>;  // database, role
  struct Cached {
    LookedUpSecret found;
    std::uint64_t expires_ms = 0;
  };

  void finished(const Key& key, const LookedUpSecret& found);
  void remember(const Key& key, const LookedUpSecret& found);

  daemon::Worker& worker_;
  net::DeferredDeleter deleter_;  // a finished Query is freed after the callback it finished in
  std::map<Key, Cached> cache_;
  std::map<Key, std::unique_ptr<Query>> running_;
};

}  // namespace sluice::frontend
