// The TLS material a `tls` section names (certificate chain, private key, client CA), loaded into
// one OpenSSL server context. Built when the config is loaded — at start, by `sluiced --check`, and
// on reload off the loop — so a bad file is a config error with its key and line, and a reload
// that fails keeps the running context. Immutable once built: every worker makes its connections'
// SSL objects from it (SSL_new is thread-safe on a shared SSL_CTX).
#pragma once

#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/tls_config.h"

namespace sluice::config {

// A file that cannot serve: `key` is the tls.* key that names it ("cert_file", ...).
struct TlsProblem {
  std::string key;
  std::string message;
};

// RFC 5929 tls-server-end-point of `certificate`: its hash with its signature's hash function (SHA-256
// for MD5 and SHA-1), as PostgreSQL and libpq compute it for SCRAM-SHA-256-PLUS; empty when the
// signature has no single hash (Ed25519).
std::vector<std::uint8_t> tls_server_end_point(X509* certificate);

class TlsContext {
 public:
  // Reads the files; mode, versions and ALPN as README "TLS" describes.
  static Result<std::shared_ptr<const TlsContext>, TlsProblem> load(const TlsConfig& tls);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] SSL_CTX* ssl_context() const { return context_; }
  // Client certificates are asked for (tls.ca_file is set).
  [[nodiscard]] bool verifies_clients() const { return verifies_clients_; }
  // RFC 5929 tls-server-end-point: the hash of our certificate (SHA-256 when it is signed with MD5
  // or SHA-1, else its signature's hash), as PostgreSQL's be_tls_get_certificate_hash; empty when
  // the signature has no single hash (Ed25519): then SCRAM-SHA-256-PLUS is not offered (PostgreSQL
  // offers it and fails the login).
  [[nodiscard]] std::span<const std::uint8_t> server_end_point() const { return server_end_point_; }
  // "serial 1A2B, subject CN=..., expires ...": what the log says a (re)load put in service.
  [[nodiscard]] const std::string& description() const { return description_; }

 private:
  TlsContext() = default;

  SSL_CTX* context_ = nullptr;
  bool verifies_clients_ = false;
  std::vector<std::uint8_t> server_end_point_;
  std::string description_;
};

}  // namespace sluice::config
