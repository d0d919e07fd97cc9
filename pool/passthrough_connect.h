// The socket side of a SCRAM pass-through login (pool/server_login is the protocol side): where the
// conninfo points, a non-blocking connect, the StartupMessage, and the login's replies, all on the
// loop (DESIGN §2). The pool's server_connect_timeout_ms bounds it: the server closes it then.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "pool/server_login.h"

namespace sluice::pool {

struct ServerAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string description;  // "/run/postgresql/.s.PGSQL.5432" or "10.0.0.5:5432", for errors
};

// The address libpq would connect to: `hostaddr`, else `host` (a socket directory, or an IP literal
// — names are resolved to `hostaddr` before), else PGHOST or the default socket directory; `port`,
// else PGPORT or 5432. One host only.
Result<ServerAddress> passthrough_address(const std::vector<std::string>& keywords,
                                          const std::vector<std::string>& values);

// The StartupMessage parameters the libpq path sends for the same keywords: user, database,
// application_name, client_encoding, options.
StartupParameters passthrough_startup(const std::vector<std::string>& keywords,
                                      const std::vector<std::string>& values);

// False when the conninfo asks for TLS to the server (sslmode require, verify-ca, verify-full) or
// lists several hosts: pass-through speaks to one PostgreSQL in plain text only, so such a pool
// keeps libpq's login.
bool passthrough_allowed(const std::vector<std::string>& keywords, const std::vector<std::string>& values);

class PassthroughConnect {
 public:
  // Runs once, on a later loop turn: empty `failure` when logged in. It may destroy the connect.
  using Done = std::function<void(const std::string& failure)>;

  static Result<std::unique_ptr<PassthroughConnect>> start(uv_loop_t* loop, const ServerAddress& address,
                                                           ServerLogin login, Done done);
  ~PassthroughConnect();
  PassthroughConnect(const PassthroughConnect&) = delete;
  PassthroughConnect& operator=(const PassthroughConnect&) = delete;

  // Once logged in: the login's results, and the socket, which the caller owns from now on.
  [[nodiscard]] const ServerLogin& login() const { return login_; }
  int release_fd();

 private:
  PassthroughConnect(ServerLogin login, Done done) : login_(std::move(login)), done_(std::move(done)) {}
  static void on_poll(uv_poll_t* handle, int status, int events);
  void on_event(int status, int events);
  bool flush();
  void read_replies();
  void watch();
  void finish(const std::string& failure);

  // The poll handle outlives this object until its close callback (libuv's rule), and with it the
  // fd when nobody took it.
  struct Poll {
    uv_poll_t handle{};
    int fd = -1;
  };

  ServerLogin login_;
  Done done_;
  Poll* poll_ = nullptr;
  bool connected_ = false;
  std::string output_;  // not yet taken by the kernel
};

}  // namespace sluice::pool
