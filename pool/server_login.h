// sluiced's own login to PostgreSQL for SCRAM pass-through, where libpq cannot be used (libpq 15
// takes a password, never a ClientKey): StartupMessage out; the SASL exchange with the client's
// ClientKey (auth::ScramClient), bound to the TLS session when there is one and the server offers
// SCRAM-SHA-256-PLUS (the conninfo's channel_binding, as libpq 15); then ParameterStatus,
// BackendKeyData and ReadyForQuery in. Pure: bytes in, bytes out; the socket and its TLS are
// pool/passthrough_connect's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "auth/scram_client.h"
#include "protocol/wire.h"

namespace sluice::pool {

using StartupParameters = std::vector<std::pair<std::string, std::string>>;

class ServerLogin {
 public:
  // Begins failure() when the login cannot work (the server wants another method, or the SCRAM
  // exchange went wrong), as opposed to a connection that failed.
  static constexpr std::string_view kRefusedPrefix = "SCRAM pass-through: ";

  enum class Status { more, done, failed };

  using ChannelBinding = auth::ClientChannelBinding::Policy;

  // `startup`: the StartupMessage's parameters (user, database, options, ...), in order.
  ServerLogin(StartupParameters startup, auth::ScramKeys keys, std::string client_nonce = {},
              ChannelBinding channel_binding = ChannelBinding::prefer);

  // Before the StartupMessage goes out: the login runs over TLS, with this tls-server-end-point
  // hash of the server's certificate (config::tls_server_end_point).
  void use_tls(std::vector<std::uint8_t> end_point);

  [[nodiscard]] std::string startup_message() const;
  // Bytes the server sent; what to answer is appended to `out`.
  Status on_bytes(protocol::Bytes bytes, std::string& out);

  // Once failed: PostgreSQL's error as libpq's verbose text words it ("FATAL:  28P01: ..."), which
  // the pool reads as a refusal; or sluiced's own reason.
  [[nodiscard]] const std::string& failure() const { return failure_; }
  // Once done.
  [[nodiscard]] const StartupParameters& parameters() const { return parameters_; }
  [[nodiscard]] std::uint32_t process_id() const { return process_id_; }
  [[nodiscard]] std::uint32_t secret() const { return secret_; }
  // The server asked for SCRAM and proved it knows the verifier (not trust).
  [[nodiscard]] bool scram_done() const { return scram_done_; }

 private:
  Status on_message(char type, protocol::Bytes body, std::string& out);
  Status on_authentication(protocol::Bytes body, std::string& out);
  Status failed(std::string reason);

  StartupParameters startup_;
  auth::ScramKeys keys_;
  std::string client_nonce_;
  auth::ClientChannelBinding binding_;
  std::optional<auth::ScramClient> scram_;  // from AuthenticationSASL on
  std::string buffer_;                      // a message not yet whole
  Status status_ = Status::more;
  bool authenticated_ = false;
  bool scram_done_ = false;
  std::string failure_;
  StartupParameters parameters_;
  std::uint32_t process_id_ = 0;
  std::uint32_t secret_ = 0;
};

}  // namespace sluice::pool
