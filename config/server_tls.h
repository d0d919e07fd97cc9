// TLS to a database's server where sluiced, not libpq, makes the handshake (SCRAM pass-through):
// what the conninfo asks for, read as libpq 15 reads it (keyword, else its PG* environment
// variable, else libpq's default), and the client SSL_CTX that serves it.
//
// The context is built with the config — at start, on reload (off the loops) and by --check —
// never on a worker's loop: it reads the root certificate, CRL, client certificate and key files,
// which libpq reads again on every connect, and a loop must not block on files per connection. One
// context then serves every pass-through connect of the database until the next reload (SSL_new on
// a shared SSL_CTX is thread-safe), so a file replaced on disk is read again on SIGHUP, as the
// tls.* files are.
#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <vector>

#include "auth/scram_client.h"

namespace sluice::config {

struct Config;

// allow is served as prefer (README "SCRAM pass-through").
enum class SslMode { disable, allow, prefer, require, verify_ca, verify_full };

struct ServerTlsSettings {
  SslMode mode = SslMode::prefer;
  auth::ClientChannelBinding::Policy channel_binding = auth::ClientChannelBinding::Policy::prefer;
  bool sni = true;
  std::string root_cert;  // empty: ~/.postgresql/root.crt, as libpq
  std::string crl;
  std::string crl_dir;
  std::string cert;  // empty: ~/.postgresql/postgresql.crt
  std::string key;   // empty: ~/.postgresql/postgresql.key
  std::string password;
  std::string min_version = "TLSv1.2";
  std::string max_version;
  std::string invalid;  // libpq's words for a value it refuses: no connection can be made

  // `keywords`/`values`: the conninfo's, as PQconninfoParse gives them.
  static ServerTlsSettings read(const std::vector<std::string>& keywords,
                                const std::vector<std::string>& values);
  bool operator==(const ServerTlsSettings&) const = default;
};

class ServerTlsContext {
 public:
  // Reads the files as libpq's initialize_SSL does; a file libpq would refuse leaves failure() set.
  static std::shared_ptr<const ServerTlsContext> load(const ServerTlsSettings& settings);
  ~ServerTlsContext();
  ServerTlsContext(const ServerTlsContext&) = delete;
  ServerTlsContext& operator=(const ServerTlsContext&) = delete;

  [[nodiscard]] const ServerTlsSettings& settings() const { return settings_; }
  // Nullptr when failure() is set, or when the mode is disable.
  [[nodiscard]] SSL_CTX* ssl_context() const { return context_; }
  // libpq's words for why no TLS connection can be made ("root certificate file ... does not exist").
  [[nodiscard]] const std::string& failure() const { return failure_; }
  // The server's certificate chain is checked against a root certificate: verify-ca and verify-full,
  // and any other mode when the root certificate file exists (libpq's rule).
  [[nodiscard]] bool verifies_chain() const { return verifies_chain_; }
  // Same settings, same contents of the files read.
  [[nodiscard]] bool same_as(const ServerTlsContext& other) const {
    return fingerprint_ == other.fingerprint_;
  }

 private:
  ServerTlsContext() = default;
  // libpq's steps, each leaving failure_ set when it refuses.
  bool load_root_certificate(const std::string& home);
  bool load_client_certificate(const std::string& home);
  // Adds a file read to the fingerprint: its path and the SHA-256 of its contents.
  void remember(const std::string& path);

  ServerTlsSettings settings_;
  SSL_CTX* context_ = nullptr;
  bool verifies_chain_ = false;
  std::string failure_;
  std::string fingerprint_;  // the settings and the SHA-256 of each file read
};

// A database's context, compared by what it holds: a reload that changes neither the conninfo's TLS
// settings nor its files leaves the database unchanged.
struct ServerTls {
  std::shared_ptr<const ServerTlsContext> context;  // nullptr: pass-through cannot serve the database
  bool operator==(const ServerTls& other) const;
};

// Fills each database's server_tls where pass-through may serve it (no password in the conninfo);
// databases with the same settings share one context.
void load_server_tls(Config& config);

}  // namespace sluice::config
