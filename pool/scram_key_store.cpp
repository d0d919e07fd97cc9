#include "pool/scram_key_store.h"

#include <openssl/crypto.h>

namespace sluice::pool {

void ScramKeyStore::remember(const std::string& database, const std::string& role,
                             const auth::ScramKeys& keys) {
  const std::lock_guard lock(mutex_);
  keys_[{database, role}] = keys;
}

std::optional<auth::ScramKeys> ScramKeyStore::find(const std::string& database,
                                                   const std::string& role) const {
  const std::lock_guard lock(mutex_);
  const auto it = keys_.find({database, role});
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

void ScramKeyStore::forget(const std::string& database, const std::string& role,
                           const auth::ScramKeys& keys) {
  const std::lock_guard lock(mutex_);
  const auto it = keys_.find({database, role});
  if (it == keys_.end() || !(it->second == keys)) return;
  OPENSSL_cleanse(&it->second, sizeof it->second);  // no copy of a refused key lingers in freed memory
  keys_.erase(it);
}

}  // namespace sluice::pool
