// ClientSession's transport security: answering SSLRequest and GSSENCRequest, and PostgreSQL 17's
// direct TLS. The TLS itself is the socket's (net/tls_channel.h); authentication
// (frontend/client_auth.cpp: tls.mode "require", the cert method, channel binding) asks it
// through ClientSession::tls().
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "daemon/worker.h"
#include "frontend/client_session.h"
#include "protocol/sqlstate.h"

namespace sluice::frontend {
namespace {

constexpr int kTlsHandshakeRecord = 0x16;  // the first byte of a ClientHello

}  // namespace

bool ClientSession::offers_tls() const {
  const config::TlsConfig& tls = worker_.config().tls;
  return transport_ == Transport::tcp && tls.mode != config::TlsMode::disable && tls.context != nullptr;
}

void ClientSession::answer_encryption_request(protocol::StartupKind kind) {
  // A second request of a kind is no request at all to PostgreSQL: its code reads as a protocol
  // version (1234.5679 for SSLRequest), and it answers as to any unknown version.
  bool& seen = kind == protocol::StartupKind::ssl_request ? ssl_request_seen_ : gss_request_seen_;
  if (seen) {
    return fail(sqlstate::kFeatureNotSupported,
                std::string("unsupported frontend protocol 1234.") +
                    (kind == protocol::StartupKind::ssl_request ? "5679" : "5680") +
                    ": server supports 3.0 to 3.0");
  }
  seen = true;
  const bool answer_n = kind == protocol::StartupKind::gssenc_request || !offers_tls();
  if (!startup_buffer_.empty()) {  // as PostgreSQL (CVE-2021-23214): nothing sent early is read
    if (answer_n) socket_->write(std::string("N"));  // PostgreSQL answers first, then refuses
    return fail(
        sqlstate::kProtocolViolation,
        kind == protocol::StartupKind::ssl_request
            ? "received unencrypted data after SSL request"
            : "received unencrypted data after GSSAPI encryption request",
        "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");
  }
  // GSSAPI is not offered; TLS on the TCP listener when configured ('N': go on in plain text).
  if (answer_n) {
    socket_->write(std::string("N"));
    return;
  }
  socket_->write(std::string("S"));
  gss_request_seen_ = true;  // inside TLS a GSSENCRequest is no request either, as in PostgreSQL
  if (!socket_->start_tls(worker_.config().tls.context, net::TlsChannel::Start::after_ssl_request))
    close("could not start TLS");
}

// PostgreSQL 17's sslnegotiation=direct: the connection opens with a ClientHello rather than an
// SSLRequest. The byte is peeked, so that OpenSSL reads the ClientHello whole from the socket.
bool ClientSession::start_direct_tls() {
  const int first = socket_->peek_byte();
  if (first == -EAGAIN) return true;
  if (first != kTlsHandshakeRecord) return false;  // a startup packet (or EOF): read as ever
  ssl_request_seen_ = true;                        // inside TLS an SSLRequest is a second one
  gss_request_seen_ = true;
  if (!socket_->start_tls(worker_.config().tls.context, net::TlsChannel::Start::direct)) {
    close("could not start TLS");
    return true;
  }
  return false;
}

std::string ClientSession::describe_read_failure(ssize_t result) const {
  const net::TlsChannel* channel = tls();
  if (result == -EPROTO && channel != nullptr && !channel->failure().empty()) {
    // PostgreSQL logs these too ("could not accept SSL connection: ..."): a client that cannot
    // connect over TLS is the operator's question, not only the client's.
    const char* what = channel->established() ? "TLS connection failed: " : "TLS handshake failed: ";
    log::info("client ", id_, ": ", what, channel->failure());
    return what + channel->failure();
  }
  return std::string("client read failed: ") + std::strerror(static_cast<int>(-result));
}

}  // namespace sluice::frontend
