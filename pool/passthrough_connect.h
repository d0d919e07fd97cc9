// The socket side of a SCRAM pass-through login (pool/server_login is the protocol side): where the
// conninfo points, a non-blocking connect, TLS as the conninfo's sslmode asks (SSLRequest, the
// handshake, the server's certificate checked as libpq 15 checks it), the StartupMessage, and the
// login's replies, all on the loop (DESIGN §2). The pool's server_connect_timeout_ms bounds it:
// the server closes it then.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/server_tls.h"
#include "net/tls_channel.h"
#include "pool/server_login.h"

namespace sluice::pool {

struct ServerAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string description;  // "/run/postgresql/.s.PGSQL.5432" or "10.0.0.5:5432", for errors
  // The conninfo's `host` (not `hostaddr`) on TCP: the name TLS sends (SNI) and verify-full checks.
  std::string host_name;
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

// False when the conninfo lists several hosts (pass-through speaks to one PostgreSQL) or requires
// GSSAPI encryption (libpq's alone): such a pool keeps libpq's login.
bool passthrough_allowed(const std::vector<std::string>& keywords, const std::vector<std::string>& values);

class PassthroughConnect {
 public:
  // Runs once, on a later loop turn: empty `failure` when logged in. It may destroy the connect.
  using Done = std::function<void(const std::string& failure)>;

  // `tls`: the database's context (config::ServerTlsContext); never used over a Unix socket.
  static Result<std::unique_ptr<PassthroughConnect>> start(
      uv_loop_t* loop, const ServerAddress& address, std::shared_ptr<const config::ServerTlsContext> tls,
      ServerLogin login, Done done);
  ~PassthroughConnect();
  PassthroughConnect(const PassthroughConnect&) = delete;
  PassthroughConnect& operator=(const PassthroughConnect&) = delete;

  // Once logged in: the login's results, and the socket and its TLS session (nullptr in plain text),
  // which the caller owns from now on.
  [[nodiscard]] const ServerLogin& login() const { return login_; }
  int release_fd();
  std::unique_ptr<net::TlsChannel> release_tls() { return std::move(tls_); }

 private:
  // What the connection waits for.
  enum class Phase {
    connecting,   // the TCP or Unix connect
    ssl_request,  // the server's one-byte answer to SSLRequest
    handshake,    // TLS
    login,        // the login's replies, through TLS when there is one
  };

  PassthroughConnect(uv_loop_t* loop, ServerAddress address,
                     std::shared_ptr<const config::ServerTlsContext> tls, ServerLogin login, Done done)
      : loop_(loop),
        address_(std::move(address)),
        context_(std::move(tls)),
        login_(std::move(login)),
        done_(std::move(done)) {}
  // A fresh socket, connecting; `try_tls`: it asks for TLS first.
  std::optional<std::string> open(bool try_tls);
  void close_poll();
  static void on_poll(uv_poll_t* handle, int status, int events);
  void on_event(int status, int events);
  bool flush();
  void read_ssl_answer();
  void advance_handshake();
  void read_replies();
  void watch();
  void finish(const std::string& failure);

  // The poll handle outlives this object until its close callback (libuv's rule), and with it the
  // fd when nobody took it.
  struct Poll {
    uv_poll_t handle{};
    int fd = -1;
  };

  uv_loop_t* loop_;
  ServerAddress address_;
  std::shared_ptr<const config::ServerTlsContext> context_;  // nullptr or unused: plain text
  ServerLogin login_;
  Done done_;
  Poll* poll_ = nullptr;
  Phase phase_ = Phase::connecting;
  bool asks_tls_ = false;  // the connection open() made starts with an SSLRequest
  bool retried_in_plain_text_ = false;
  std::unique_ptr<net::TlsChannel> tls_;
  bool tls_wants_write_ = false;  // OpenSSL waits for the socket to take bytes
  std::string output_;            // not yet taken by the kernel (or by TLS)
};

}  // namespace sluice::pool
