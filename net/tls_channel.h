// One connection's TLS: OpenSSL on the connection's non-blocking fd, driven by the PollSocket that
// owns it. Every call does what the socket allows now and says what it waits for; nothing blocks.
// Either a client's, as the server (accept: SSL_set_fd, the handshake inside read), or a server
// connection's, as the client: one that libpq has established and keeps owning (borrow), or one
// sluiced makes itself for SCRAM pass-through (connect: the handshake inside read too).
#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "config/tls_context.h"

namespace sluice::net {

class TlsChannel {
 public:
  enum class Status {
    done,        // `bytes` moved
    want_read,   // wait until the socket is readable, then call again
    want_write,  // wait until the socket is writable, then call again
    closed,      // the peer ended the stream (close_notify or EOF)
    failed,      // the handshake or the stream failed: failure() says why
  };
  struct Io {
    Status status;
    std::size_t bytes = 0;
  };

  // Direct TLS (PostgreSQL 17's sslnegotiation=direct) must negotiate ALPN "postgresql".
  enum class Start { after_ssl_request, direct };

  // Nullptr when OpenSSL cannot make the connection's state (out of memory).
  static std::unique_ptr<TlsChannel> accept(int fd, std::shared_ptr<const config::TlsContext> context,
                                            Start start);
  // libpq's TLS session of a server connection, handshake done: read and write go through it (its
  // BIO reads and writes libpq's socket), and libpq's PQfinish shuts it down and frees it.
  static std::unique_ptr<TlsChannel> borrow(SSL* established);
  // sluiced's own session to a server, from `context` (config::ServerTlsContext's): the first read
  // sends the ClientHello. `server_name`, when not empty, goes in the SNI extension.
  static std::unique_ptr<TlsChannel> connect(int fd, SSL_CTX* context, const std::string& server_name);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  // Finishes the handshake first when it is not done.
  Io read(void* buffer, std::size_t size);
  // Advances the handshake alone: done once established (a server connection's login waits for it
  // before its StartupMessage).
  Io handshake();
  // Only once the handshake is done (writes before it are the caller's to drop). After
  // want_write, call again with the same bytes first (more may follow them).
  Io write(const void* bytes, std::size_t size);
  // Best-effort close_notify; never waits.
  void shutdown();

  [[nodiscard]] bool established() const { return established_; }
  // Bytes OpenSSL holds that a read would return: no poll event will announce them.
  [[nodiscard]] bool has_buffered_plaintext() const;
  [[nodiscard]] const std::string& failure() const { return failure_; }

  // ---- what authentication may ask (frontend/transport_security.h) ----
  // "TLSv1.3", "TLSv1.2".
  [[nodiscard]] std::string_view version() const;
  // RFC 5929 tls-server-end-point data for SCRAM's channel binding (config::TlsContext); a client's
  // channel (accept) only.
  [[nodiscard]] std::span<const std::uint8_t> server_end_point() const {
    return context_->server_end_point();
  }
  // The client presented a certificate and it verified against tls.ca_file.
  [[nodiscard]] bool peer_certificate_verified() const;
  // A server's channel (connect), once established: the certificate the server presented.
  [[nodiscard]] X509* peer_certificate() const;
  // The verified client certificate's subject CN; nullopt without one (or with no CN, or one
  // holding a NUL, which PostgreSQL refuses too).
  [[nodiscard]] std::optional<std::string> peer_common_name() const;

 private:
  TlsChannel(SSL* ssl, std::shared_ptr<const config::TlsContext> context, Start start, bool owns_ssl)
      : ssl_(ssl), context_(std::move(context)), start_(start), owns_ssl_(owns_ssl) {}
  // SSL_get_error's verdict on a call that did not succeed.
  Io status_after(int result);

  SSL* ssl_;
  std::shared_ptr<const config::TlsContext> context_;  // outlives a reload's swap
  Start start_;
  bool owns_ssl_;  // false when borrowed: the session is libpq's to shut down and free
  bool established_ = false;
  bool starved_ = false;  // the last read wanted more from the kernel
  std::string failure_;
};

}  // namespace sluice::net
