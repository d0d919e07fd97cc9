#include "config/tls_context.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

namespace sluice::config {
namespace {

// PostgreSQL's ALPN protocol name (PostgreSQL 17), length-prefixed as ALPN wants it.
constexpr unsigned char kAlpnPostgresql[] = "\x0apostgresql";

// The oldest error on this thread's OpenSSL queue, worded by OpenSSL; the queue is left empty.
std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no details from OpenSSL";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : "OpenSSL error " + std::to_string(code);
}

// Before OpenSSL reads it: a path that is missing or not a regular file (a FIFO, /dev/zero) gets a
// plain answer instead of a hang or an OpenSSL code.
std::optional<std::string> unreadable(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return "cannot read \"" + path + "\": " + std::strerror(errno);
  if (!S_ISREG(info.st_mode)) return "\"" + path + "\" is not a regular file";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot read \"" + path + "\": " + std::strerror(errno);
  ::close(fd);
  return std::nullopt;
}

// PostgreSQL 17 refuses a client that offers ALPN without "postgresql" (a fatal
// no_application_protocol alert); a client that offers none is let through here, and a direct TLS
// connection without it is refused once the handshake is done (net/tls_channel.cpp).
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                unsigned int in_length, void* /*arg*/) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_length, kAlpnPostgresql, sizeof kAlpnPostgresql - 1, in,
                            in_length) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

std::string describe_certificate(X509* certificate) {
  std::string serial = "?";
  if (BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr)) {
    if (char* hex = BN_bn2hex(number)) {
      serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(number);
  }
  std::string subject = "?";
  if (char* line = X509_NAME_oneline(X509_get_subject_name(certificate), nullptr, 0)) {
    subject = line;
    OPENSSL_free(line);
  }
  return "serial " + serial + ", subject " + subject;
}

}  // namespace

std::vector<std::uint8_t> tls_server_end_point(X509* certificate) {
  int digest_nid = NID_undef;
  if (X509_get_signature_info(certificate, &digest_nid, nullptr, nullptr, nullptr) != 1) return {};
  // RFC 5929 section 4.1: MD5 and SHA-1 are replaced by SHA-256.
  const EVP_MD* digest =
      digest_nid == NID_md5 || digest_nid == NID_sha1 ? EVP_sha256() : EVP_get_digestbynid(digest_nid);
  if (digest == nullptr) return {};
  std::vector<std::uint8_t> hash(EVP_MAX_MD_SIZE);
  unsigned int length = 0;
  if (X509_digest(certificate, digest, hash.data(), &length) != 1) return {};
  hash.resize(length);
  return hash;
}

TlsContext::~TlsContext() { SSL_CTX_free(context_); }

Result<std::shared_ptr<const TlsContext>, TlsProblem> TlsContext::load(const TlsConfig& tls) {
  using Problem = Failure<TlsProblem>;
  ERR_clear_error();
  std::shared_ptr<TlsContext> loaded(new TlsContext);
  loaded->context_ = SSL_CTX_new(TLS_server_method());
  SSL_CTX* context = loaded->context_;
  if (context == nullptr) return Problem{{"mode", "cannot create a TLS context: " + openssl_error()}};

  // What PostgreSQL's be_tls_init sets: no renegotiation, no session resumption (a ticket would
  // outlive a certificate swap), no compression. Ciphers stay OpenSSL's defaults.
  SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(context, 0);  // TLS 1.3 would send tickets after every handshake
  SSL_CTX_set_min_proto_version(context,
                                tls.min_version == TlsMinVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
  // Writes resume from sluiced's own pending buffer, which may move as it grows; an idle
  // connection gives its record buffers back, as an idle plain one holds no read buffer.
  SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                SSL_MODE_RELEASE_BUFFERS);
  // One read(2) takes a record's header and body (and what follows) instead of one read for
  // each: TlsChannel then serves what OpenSSL holds before waiting for the kernel again.
  SSL_CTX_set_read_ahead(context, 1);
  SSL_CTX_set_alpn_select_cb(context, select_alpn, nullptr);

  if (auto problem = unreadable(tls.cert_file)) return Problem{{"cert_file", *problem}};
  if (SSL_CTX_use_certificate_chain_file(context, tls.cert_file.c_str()) != 1) {
    return Problem{{"cert_file", "no usable certificate in \"" + tls.cert_file + "\": " + openssl_error()}};
  }
  if (auto problem = unreadable(tls.key_file)) return Problem{{"key_file", *problem}};
  if (SSL_CTX_use_PrivateKey_file(context, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(context) != 1) {
    const int reason = ERR_GET_REASON(ERR_peek_error());
    if (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH) {
      ERR_clear_error();
      return Problem{{"key_file", "the private key in \"" + tls.key_file +
                                      "\" does not match the certificate in \"" + tls.cert_file + "\""}};
    }
    return Problem{{"key_file", "no usable private key in \"" + tls.key_file + "\": " + openssl_error()}};
  }
  if (!tls.ca_file.empty()) {
    if (auto problem = unreadable(tls.ca_file)) return Problem{{"ca_file", *problem}};
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.ca_file.c_str());
    if (names == nullptr || SSL_CTX_load_verify_locations(context, tls.ca_file.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return Problem{{"ca_file", "no usable CA certificate in \"" + tls.ca_file + "\": " + openssl_error()}};
    }
    SSL_CTX_set_client_CA_list(context, names);
    // As PostgreSQL with ssl_ca_file: a client certificate is asked for, not required; one that
    // is presented must verify, or the handshake fails. The `cert` method requires one.
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, nullptr);
    loaded->verifies_clients_ = true;
  }
  X509* certificate = SSL_CTX_get0_certificate(context);
  loaded->server_end_point_ = tls_server_end_point(certificate);
  loaded->description_ = describe_certificate(certificate);
  ERR_clear_error();
  return std::shared_ptr<const TlsContext>(std::move(loaded));
}

}  // namespace sluice::config
