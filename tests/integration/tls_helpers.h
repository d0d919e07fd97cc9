// TLS test material: a throwaway PKI made by the `openssl` CLI in the test's temp dir, a free TCP
// port for the TLS listener, and a small OpenSSL client for what libpq 15 cannot do (PostgreSQL
// 17's direct TLS, ALPN choices, half handshakes).
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace harness {

// A CA and a server certificate for "localhost" (serial 1000, EC P-256: quick to make).
class TestPki {
 public:
  explicit TestPki(const std::string& ca_name = "Sluice Test CA");

  [[nodiscard]] const std::string& dir() const { return dir_.path(); }
  [[nodiscard]] std::string ca_cert() const { return dir() + "/ca.crt"; }
  [[nodiscard]] std::string server_cert() const { return dir() + "/server.crt"; }
  [[nodiscard]] std::string server_key() const { return dir() + "/server.key"; }

  // A fresh key and a certificate for CN `common_name` signed by this CA, written to
  // <dir>/<name>.crt and <dir>/<name>.key. `server`: subjectAltName DNS:localhost.
  void issue(const std::string& name, const std::string& common_name, long serial, bool server) const;
  // Another CA, unrelated to this one: <dir>/<name>.crt (its key beside it).
  void make_other_ca(const std::string& name) const;

 private:
  TempDir dir_;
};

// Overrides for PoolOptions: listen.tcp on 127.0.0.1:`tcp_port` and a tls section with this PKI's
// server certificate (and its CA for client certificates).
nlohmann::json tls_overrides(const TestPki& pki, const std::string& mode, int tcp_port);

// "host=127.0.0.1 port=<port> dbname=postgres connect_timeout=10 " + `options` (sslmode=...).
std::string tcp_conninfo(int port, const std::string& options);

// Through `conn`, a session whose server connection is on TLS (pg_stat_ssl) and results spanning many
// TLS records both ways (4 MiB out, a 2 MiB statement in) are those `direct` gets.
void expect_served_over_tls(const PgConn& conn, const PgConn& direct);

// Two clients of a one-server pool take `turns` transactions in turn, each leaving a SET (its own
// application_name) in its session: every release resets the server over the same TLS session, and
// each client's setting follows it.
void take_turns_on_one_server(const PgConn& first, const PgConn& second, int turns);

// The serial (upper-case hex) of the certificate the server presented to a libpq connection.
std::string server_serial(const PgConn& conn);

// A blocking OpenSSL client on 127.0.0.1:port. Without `ssl_request` it starts with a ClientHello
// (direct TLS); with it, it sends an SSLRequest first and expects 'S'.
class TlsClient {
 public:
  struct Options {
    bool ssl_request = false;
    std::string alpn{};     // offered when not empty
    std::string ca_file{};  // verify the server against it when not empty
  };
  TlsClient(int port, const Options& options);
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // False when the handshake fails; failure() says why.
  bool handshake();
  [[nodiscard]] const std::string& failure() const { return failure_; }
  [[nodiscard]] std::string version() const;
  bool send(const std::string& bytes);
  std::optional<Message> read_message(std::chrono::milliseconds timeout = kReplyTimeout);
  // Logs in as this user to postgres: "I", or what came instead.
  std::string login();
  // True once the server has closed the connection (an alert, close_notify or EOF).
  bool closed_by_peer(std::chrono::milliseconds timeout = kReplyTimeout);

 private:
  std::optional<std::string> read_bytes(std::size_t count, std::chrono::milliseconds timeout);

  int fd_ = -1;
  SSL_CTX* context_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string failure_;
  std::string buffer_;
};

}  // namespace harness
