// The server side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677, as PostgreSQL speaks it):
// AuthenticationSASL out, SASLInitialResponse in, SASLContinue out, SASLResponse in,
// SASLFinal out. Pure: the session feeds it the bodies of the client's 'p' messages.
//
// With a verifier from auth.file the server does no PBKDF2: the proof is checked with HMACs.
// A role without a SCRAM verifier gets the mock exchange PostgreSQL runs: a stable fake salt, the
// same messages, and a failure only at the end, so a client cannot tell "no such role" from
// "wrong password".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "auth/auth_step.h"
#include "auth/scram_client.h"
#include "auth/secret.h"
#include "protocol/wire.h"

namespace sluice::auth {

// tls-server-end-point data (RFC 5929) of the client's TLS connection; nullopt when it is not on
// TLS. Present, SCRAM-SHA-256-PLUS is offered and the client's binding is checked against it.
using ChannelBinding = std::optional<std::vector<std::uint8_t>>;

class ScramExchange {
 public:
  struct Options {
    std::string user;
    // nullopt runs the mock exchange, which fails at the end; `why_no_verifier` is then the log's reason.
    std::optional<ScramVerifier> verifier;
    std::string why_no_verifier;
    ChannelBinding channel_binding;
    std::string server_nonce;  // empty: 18 random bytes, base64 (tests fix it)
  };

  explicit ScramExchange(Options options);

  // AuthenticationSASL: the mechanisms offered.
  [[nodiscard]] std::string start() const;
  // One 'p' message body: the SASLInitialResponse, then the SASLResponse.
  AuthStep on_response(protocol::Bytes body);
  // After a successful exchange: ClientKey = ClientProof XOR ClientSignature, which lets sluiced
  // prove the same identity to PostgreSQL (SCRAM pass-through).
  [[nodiscard]] const std::optional<Digest>& client_key() const { return client_key_; }
  // The ClientKey with the verifier's ServerKey: what SCRAM pass-through logs in to PostgreSQL with.
  [[nodiscard]] std::optional<ScramKeys> scram_keys() const;
  // The client chose SCRAM-SHA-256-PLUS: the exchange is bound to its TLS connection.
  [[nodiscard]] bool channel_bound() const { return plus_; }

 private:
  AuthStep client_first(protocol::Bytes body);
  AuthStep client_final(std::string_view message);
  AuthStep malformed(std::string detail);

  enum class Expect { initial_response, final_message, nothing };
  Options options_;
  ScramVerifier verifier_;  // the role's, or the mock one
  Expect expect_ = Expect::initial_response;
  bool plus_ = false;       // SCRAM-SHA-256-PLUS chosen
  std::string gs2_header_;  // as the client sent it: the c= attribute must repeat it
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // client's and server's, joined
  std::optional<Digest> client_key_;
};

// The fake verifier for `user`: the same salt for the same name for the life of the process (a
// changing salt would tell the role does not exist), derived with HMACs from a random secret,
// never with PBKDF2.
ScramVerifier mock_scram_verifier(std::string_view user);

}  // namespace sluice::auth
