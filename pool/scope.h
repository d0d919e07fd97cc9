// The lease: one client's hold on one server connection. Created by
// Pool::acquire, ended exactly once; the outcome (clean, rollback, cancel,
// discard) follows the server's real state. A scope nobody ended ends as
// discard in its destructor, so a forgotten path fails safe and is counted.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace sluice::pool {

class Pool;
class ServerConnection;

class Scope {
 public:
  Scope() = default;
  Scope(Pool& pool, ServerConnection& server, std::uint64_t client_id);
  Scope(Scope&& other) noexcept;
  Scope& operator=(Scope&& other) noexcept;
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  ~Scope();

  explicit operator bool() const { return server_ != nullptr; }
  [[nodiscard]] ServerConnection& server() const { return *server_; }
  [[nodiscard]] Pool& pool() const { return *pool_; }

  // Ends the scope with the outcome the server's state calls for.
  // `client_mid_message`: the client stopped inside a message it was sending,
  // which no teardown can complete, so the server is discarded.
  void end(std::string_view reason, bool client_mid_message = false);
  // Ends the scope by closing the server connection.
  void discard(std::string_view reason);
  // Live upgrade: the server goes to the new process with its client (Pool::hand_over_server); its
  // socket, or -1 when it cannot (the scope holds on then).
  int hand_over();

 private:
  void finish(std::string_view reason, bool client_mid_message, bool force_discard);

  Pool* pool_ = nullptr;
  ServerConnection* server_ = nullptr;
  std::uint64_t client_id_ = 0;
};

}  // namespace sluice::pool
