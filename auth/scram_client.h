// The client side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677, as libpq speaks it), for
// SCRAM pass-through: sluiced logs in to PostgreSQL with the ClientKey a client proved, not with a
// password. ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage), StoredKey = H(ClientKey); the
// server's signature is checked with the ServerKey of the verifier the client was checked against.
// Over TLS it binds the exchange to the session as libpq 15 does (channel_binding, RFC 5929
// tls-server-end-point): SCRAM-SHA-256-PLUS when the server offers it.
// Pure: the login feeds it the bodies of the server's SASL messages and sends what it returns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/crypto.h"
#include "common/result.h"
#include "protocol/wire.h"

namespace sluice::auth {

// What a client's SCRAM login leaves sluiced: enough to log in as the role, never the password.
struct ScramKeys {
  Digest client_key{};
  Digest server_key{};
  bool operator==(const ScramKeys&) const = default;
};

// The conninfo's channel_binding and the session the exchange runs over.
struct ClientChannelBinding {
  enum class Policy { disable, prefer, require };
  Policy policy = Policy::prefer;
  bool tls = false;
  // Over TLS: the hash of the server's certificate (tls-server-end-point); empty when its signature
  // names no single hash, and then SCRAM-SHA-256-PLUS cannot be used.
  std::vector<std::uint8_t> end_point;
};

class ScramClient {
 public:
  // `client_nonce` empty: 18 random bytes, base64 (tests fix it). `user` goes into n=, which
  // PostgreSQL ignores (libpq sends it empty; RFC 7677's test vector has "user").
  explicit ScramClient(ScramKeys keys, std::string client_nonce = {}, const std::string& user = {},
                       ClientChannelBinding binding = {});

  // AuthenticationSASL's body (the mechanisms, each NUL-terminated, then a NUL): the
  // SASLInitialResponse message to send, or why the exchange cannot go on.
  Result<std::string> on_mechanisms(protocol::Bytes body);
  // AuthenticationSASLContinue's body (server-first-message): the SASLResponse message to send.
  Result<std::string> on_server_first(protocol::Bytes body);
  // AuthenticationSASLFinal's body (server-final-message): nullopt when the server proved it
  // knows the verifier, else why not.
  std::optional<std::string> on_server_final(protocol::Bytes body);

  // SCRAM-SHA-256-PLUS was chosen: the server's proof, once checked, is bound to the TLS session.
  [[nodiscard]] bool channel_bound() const { return plus_; }

 private:
  enum class Expect { mechanisms, server_first, server_final, nothing };
  ScramKeys keys_;
  ClientChannelBinding binding_;
  bool plus_ = false;
  std::string gs2_header_;  // "n,,", "y,," or "p=tls-server-end-point,,"
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string auth_message_;  // client-first-bare "," server-first "," client-final-without-proof
  Expect expect_ = Expect::mechanisms;
};

}  // namespace sluice::auth
