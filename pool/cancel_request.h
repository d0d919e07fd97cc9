// A CancelRequest sent the way DESIGN §2 asks: a non-blocking socket to the
// server's postmaster, the 16 bytes, then the wait for the postmaster to hang
// up — which it does only once it has signalled the backend. Until then a
// server whose query was cancelled must not run anyone else's query.
#pragma once

#include <libpq-fe.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"

namespace sluice::pool {

// Where and what to send: the server's address and its BackendKeyData.
struct CancelKey {
  sockaddr_storage address{};
  socklen_t address_length = 0;
  std::uint32_t process_id = 0;
  std::uint32_t secret = 0;
};

// Reads the key of an open libpq connection; nullopt when it cannot be read
// with certainty (then a cancel cannot be sent, and callers fail safe).
std::optional<CancelKey> cancel_key_of(PGconn* conn);

enum class CancelResult {
  delivered,  // the postmaster read it and hung up: the backend has been signalled
  not_sent,   // no byte reached the postmaster: nothing was signalled
  unknown,    // the bytes went out but the hang-up never came cleanly
};

class CancelRequest {
 public:
  using Done = std::function<void(CancelResult result, const std::string& detail)>;

  // Starts at once; `done` runs exactly once, on a later loop turn, unless the
  // request is destroyed first. A failure to start means nothing was sent.
  static Result<std::unique_ptr<CancelRequest>> start(uv_loop_t* loop, const CancelKey& key, Done done);
  ~CancelRequest();
  CancelRequest(const CancelRequest&) = delete;
  CancelRequest& operator=(const CancelRequest&) = delete;

 private:
  explicit CancelRequest(Done done) : done_(std::move(done)) {}
  static void on_poll(uv_poll_t* handle, int status, int events);
  void on_event(int status, int events);
  void send_packet();
  void finish(CancelResult result, const std::string& detail);

  // The poll handle and the fd it watches, freed together in the handle's close callback.
  struct Poll {
    uv_poll_t handle{};
    int fd = -1;
  };

  Done done_;
  int fd_ = -1;
  Poll* poll_ = nullptr;
  std::string packet_;
  std::size_t sent_ = 0;
};

}  // namespace sluice::pool
