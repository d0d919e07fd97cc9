#include "pool/scope.h"

#include <utility>

#include "pool/pool.h"

namespace sluice::pool {

Scope::Scope(Pool& pool, ServerConnection& server, std::uint64_t client_id)
    : pool_(&pool), server_(&server), client_id_(client_id) {}

Scope::Scope(Scope&& other) noexcept
    : pool_(other.pool_), server_(std::exchange(other.server_, nullptr)), client_id_(other.client_id_) {}

Scope& Scope::operator=(Scope&& other) noexcept {
  if (this != &other) {
    if (server_ != nullptr) finish("scope replaced without an outcome", false, true);
    pool_ = other.pool_;
    server_ = std::exchange(other.server_, nullptr);
    client_id_ = other.client_id_;
  }
  return *this;
}

Scope::~Scope() {
  if (server_ != nullptr) finish("scope dropped without an outcome", false, true);
}

void Scope::end(std::string_view reason, bool client_mid_message) {
  if (server_ != nullptr) finish(reason, client_mid_message, false);
}

void Scope::discard(std::string_view reason) {
  if (server_ != nullptr) finish(reason, false, true);
}

int Scope::hand_over() {
  if (server_ == nullptr) return -1;
  const int fd = pool_->hand_over_server(*server_, client_id_);
  if (fd >= 0) server_ = nullptr;
  return fd;
}

void Scope::finish(std::string_view reason, bool client_mid_message, bool force_discard) {
  ServerConnection* server = std::exchange(server_, nullptr);
  pool_->end_scope(*server, client_id_, reason, client_mid_message, force_discard);
}

}  // namespace sluice::pool
