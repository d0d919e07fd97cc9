#include "net/tls_channel.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>

namespace sluice::net {

namespace {

// A session of `context` on `fd` (which stays the socket's: the BIO does not close it); nullptr when
// OpenSSL cannot make it.
SSL* new_session(int fd, SSL_CTX* context) {
  SSL* ssl = SSL_new(context);
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

}  // namespace

std::unique_ptr<TlsChannel> TlsChannel::accept(int fd, std::shared_ptr<const config::TlsContext> context,
                                               Start start) {
  SSL* ssl = new_session(fd, context->ssl_context());
  if (ssl == nullptr) return nullptr;
  SSL_set_accept_state(ssl);
  return std::unique_ptr<TlsChannel>(new TlsChannel(ssl, std::move(context), start, /*owns_ssl=*/true));
}

std::unique_ptr<TlsChannel> TlsChannel::borrow(SSL* established) {
  // PollSocket writes as send(2) does: part of the bytes, the rest retried later from its own
  // buffer (libpq's pqsecure_write copes with partial writes too).
  SSL_set_mode(established, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  auto channel = std::unique_ptr<TlsChannel>(
      new TlsChannel(established, nullptr, Start::after_ssl_request, /*owns_ssl=*/false));
  channel->established_ = true;
  return channel;
}

std::unique_ptr<TlsChannel> TlsChannel::connect(int fd, SSL_CTX* context, const std::string& server_name) {
  SSL* ssl = new_session(fd, context);  // the context's modes: partial writes from a moving buffer
  if (ssl == nullptr) return nullptr;
  if (!server_name.empty() && SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return std::unique_ptr<TlsChannel>(
      new TlsChannel(ssl, nullptr, Start::after_ssl_request, /*owns_ssl=*/true));
}

TlsChannel::~TlsChannel() {
  if (owns_ssl_) SSL_free(ssl_);
}

TlsChannel::Io TlsChannel::status_after(int result) {
  const int error = SSL_get_error(ssl_, result);
  switch (error) {
    case SSL_ERROR_WANT_READ:
      return {Status::want_read};
    case SSL_ERROR_WANT_WRITE:
      return {Status::want_write};
    case SSL_ERROR_ZERO_RETURN:
      return {Status::closed};
    case SSL_ERROR_SYSCALL:
      if (errno == 0 || errno == ECONNRESET || errno == EPIPE) return {Status::closed};
      failure_ = std::strerror(errno);
      return {Status::failed};
    default: {
      const unsigned long code = ERR_get_error();
      // A peer that hangs up without close_notify (most clients do) has simply left.
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) return {Status::closed};
      const char* reason = ERR_reason_error_string(code);
      failure_ = reason != nullptr ? reason : "TLS error " + std::to_string(code);
      return {Status::failed};
    }
  }
}

TlsChannel::Io TlsChannel::handshake() {
  ERR_clear_error();  // OpenSSL's queue is per thread: a stale entry would mislead SSL_get_error
  errno = 0;
  const int result = SSL_do_handshake(ssl_);
  if (result != 1) return status_after(result);
  established_ = true;
  if (start_ == Start::direct) {
    const unsigned char* protocol = nullptr;
    unsigned int length = 0;
    SSL_get0_alpn_selected(ssl_, &protocol, &length);
    if (length == 0) {  // PostgreSQL 17's check and wording; it then closes without a reply
      failure_ = "received direct SSL connection request without ALPN protocol negotiation extension";
      return {Status::failed};
    }
  }
  return {Status::done};
}

TlsChannel::Io TlsChannel::read(void* buffer, std::size_t size) {
  starved_ = true;  // until a read returns bytes: a handshake's leftovers wait for the kernel too
  if (!established_) {
    const Io done = handshake();
    if (done.status != Status::done) return done;
  }
  ERR_clear_error();
  errno = 0;
  std::size_t bytes = 0;
  const int result = SSL_read_ex(ssl_, buffer, size, &bytes);
  if (result == 1) {
    starved_ = false;
    return {Status::done, bytes};
  }
  return status_after(result);
}

TlsChannel::Io TlsChannel::write(const void* bytes, std::size_t size) {
  ERR_clear_error();
  errno = 0;
  std::size_t written = 0;
  const int result = SSL_write_ex(ssl_, bytes, size, &written);
  if (result == 1) return {Status::done, written};
  return status_after(result);
}

void TlsChannel::shutdown() {
  if (!owns_ssl_ || !established_ || !failure_.empty()) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // sends close_notify if the kernel takes it; the peer's is not awaited
  ERR_clear_error();
}

// With read-ahead, OpenSSL may also hold whole records it has not decrypted yet; a read that
// found only part of one waits for the kernel's next event instead.
bool TlsChannel::has_buffered_plaintext() const {
  return SSL_pending(ssl_) > 0 || (!starved_ && SSL_has_pending(ssl_) == 1);
}

std::string_view TlsChannel::version() const { return SSL_get_version(ssl_); }

bool TlsChannel::peer_certificate_verified() const {
  return established_ && SSL_get0_peer_certificate(ssl_) != nullptr &&
         SSL_get_verify_result(ssl_) == X509_V_OK;
}

X509* TlsChannel::peer_certificate() const {
  return established_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
}

std::optional<std::string> TlsChannel::peer_common_name() const {
  if (!peer_certificate_verified()) return std::nullopt;
  X509_NAME* subject = X509_get_subject_name(SSL_get0_peer_certificate(ssl_));
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return std::nullopt;
  unsigned char* utf8 = nullptr;
  const int length =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
  if (length < 0) return std::nullopt;
  std::string name(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  if (name.find('\0') != std::string::npos) return std::nullopt;
  return name;
}

}  // namespace sluice::net
