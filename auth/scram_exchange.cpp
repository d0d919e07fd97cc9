#include "auth/scram_exchange.h"

#include <array>
#include <cstring>

#include "auth/scram_syntax.h"
#include "protocol/sqlstate.h"

namespace sluice::auth {
namespace {

constexpr std::string_view kScram = "SCRAM-SHA-256";
constexpr std::string_view kScramPlus = "SCRAM-SHA-256-PLUS";
constexpr std::string_view kBindingType = "tls-server-end-point";
constexpr std::size_t kRawNonceLength = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN

// Printable ASCII but ',' (RFC 5802's "printable"), which a nonce must be.
bool is_printable(std::string_view text) {
  for (const char c : text) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return !text.empty();
}

std::string describe_start(std::string_view input) {
  return input.empty() ? "end of message" : "\"" + std::string(input.substr(0, 1)) + "\"";
}

AuthError protocol_error(std::string message, std::string detail = {}) {
  std::string reason = message + (detail.empty() ? "" : ": " + detail);
  return AuthError{.sqlstate = sqlstate::kProtocolViolation,
                   .message = std::move(message),
                   .detail = std::move(detail),
                   .log_reason = std::move(reason)};
}

AuthStep failed(AuthError error) { return AuthStep{AuthStep::Verdict::failed, {}, std::move(error)}; }

const Digest& process_secret() {
  static const Digest secret = [] {
    Digest bytes{};
    random_bytes(bytes);
    return bytes;
  }();
  return secret;
}

}  // namespace

ScramVerifier mock_scram_verifier(std::string_view user) {
  const Digest& secret = process_secret();
  const Digest salt = hmac_sha256(secret, as_bytes("salt " + std::string(user)));
  return ScramVerifier{.iterations = kDefaultScramIterations,
                       .salt = {salt.begin(), salt.begin() + 16},
                       .stored_key = hmac_sha256(secret, as_bytes("stored " + std::string(user))),
                       .server_key = hmac_sha256(secret, as_bytes("server " + std::string(user)))};
}

ScramExchange::ScramExchange(Options options) : options_(std::move(options)) {
  // Made for every role, used for unknown ones: both take the same work, so its time tells nothing.
  ScramVerifier mock = mock_scram_verifier(options_.user);
  verifier_ = options_.verifier ? *options_.verifier : std::move(mock);
  if (options_.server_nonce.empty()) {
    std::array<std::uint8_t, kRawNonceLength> raw{};
    random_bytes(raw);
    options_.server_nonce = base64_encode(raw);
  }
}

std::optional<ScramKeys> ScramExchange::scram_keys() const {
  if (!client_key_) return std::nullopt;
  return ScramKeys{.client_key = *client_key_, .server_key = verifier_.server_key};
}

std::string ScramExchange::start() const {
  std::string mechanisms;
  if (options_.channel_binding) mechanisms.append(kScramPlus).push_back('\0');
  mechanisms.append(kScram).push_back('\0');
  mechanisms.push_back('\0');
  std::string out;
  append_authentication_request(out, 10, mechanisms);
  return out;
}

AuthStep ScramExchange::malformed(std::string detail) {
  expect_ = Expect::nothing;
  return failed(protocol_error("malformed SCRAM message", std::move(detail)));
}

AuthStep ScramExchange::on_response(protocol::Bytes body) {
  switch (expect_) {
    case Expect::initial_response:
      return client_first(body);
    case Expect::final_message:
      return client_final({reinterpret_cast<const char*>(body.data()), body.size()});
    case Expect::nothing:
      break;
  }
  return malformed("The exchange is already over.");
}

// SASLInitialResponse: mechanism\0, int32 length (-1: none), client-first-message.
AuthStep ScramExchange::client_first(protocol::Bytes body) {
  const auto* text = reinterpret_cast<const char*>(body.data());
  const void* nul = std::memchr(text, '\0', body.size());
  if (nul == nullptr) return malformed("The SASLInitialResponse has no mechanism name.");
  const std::string_view mechanism(text, static_cast<const char*>(nul) - text);
  const std::size_t after = mechanism.size() + 1;
  if (mechanism == kScramPlus && options_.channel_binding) {
    plus_ = true;
  } else if (mechanism != kScram) {
    expect_ = Expect::nothing;
    return failed(protocol_error("client selected an invalid SASL authentication mechanism"));
  }
  if (body.size() < after + 4) return malformed("The SASLInitialResponse is truncated.");
  const std::uint32_t length = protocol::read_u32(body.data() + after);
  if (length != body.size() - after - 4) return malformed("The SASLInitialResponse length does not match.");
  std::string_view input(text + after + 4, length);

  // gs2-header: channel-binding flag, then an authzid we do not support.
  const std::string_view whole = input;
  switch (input.empty() ? '\0' : input[0]) {
    case 'p': {
      if (!plus_) {
        return malformed(
            "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message "
            "includes channel binding data.");
      }
      const auto type = read_scram_attribute(input, 'p');
      if (!type) return malformed("Unexpected channel-binding flag " + describe_start(input) + ".");
      if (*type != kBindingType) {
        expect_ = Expect::nothing;
        return failed(
            protocol_error("unsupported SCRAM channel-binding type \"" + std::string(*type) + "\""));
      }
      break;
    }
    case 'y':
      if (options_.channel_binding) {
        expect_ = Expect::nothing;
        return failed(protocol_error("SCRAM channel binding negotiation error",
                                     "The client supports SCRAM channel binding but thinks the server does "
                                     "not.  However, this server does support channel binding."));
      }
      [[fallthrough]];
    case 'n':
      if (plus_) {
        return malformed(
            "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include "
            "channel binding data.");
      }
      if (input.size() < 2 || input[1] != ',')
        return malformed("Comma expected after the channel-binding flag.");
      input.remove_prefix(2);
      break;
    default:
      return malformed("Unexpected channel-binding flag " + describe_start(input) + ".");
  }
  if (input.starts_with("a=")) {
    expect_ = Expect::nothing;
    return failed(AuthError{.sqlstate = sqlstate::kFeatureNotSupported,
                            .message = "client uses authorization identity, but it is not supported",
                            .detail = {},
                            .log_reason = "the client sent an authorization identity"});
  }
  if (input.empty() || input[0] != ',') return malformed("Unexpected attribute in the gs2 header.");
  input.remove_prefix(1);
  gs2_header_ = std::string(whole.substr(0, whole.size() - input.size()));

  // client-first-message-bare: [m=...,] n=user, r=nonce [,extensions]
  client_first_bare_ = std::string(input);
  if (input.starts_with("m=")) {
    expect_ = Expect::nothing;
    return failed(AuthError{.sqlstate = sqlstate::kFeatureNotSupported,
                            .message = "client requires an unsupported SCRAM extension",
                            .detail = {},
                            .log_reason = "the client requires a SCRAM extension (m=)"});
  }
  // PostgreSQL ignores n=: the role is the startup packet's.
  if (!read_scram_attribute(input, 'n'))
    return malformed("Expected attribute \"n\" but found " + describe_start(input) + ".");
  const auto client_nonce = read_scram_attribute(input, 'r');
  if (!client_nonce || !is_printable(*client_nonce)) {
    return malformed("Expected a printable nonce \"r\" but found " + describe_start(input) + ".");
  }
  nonce_ = std::string(*client_nonce) + options_.server_nonce;
  server_first_ =
      "r=" + nonce_ + ",s=" + base64_encode(verifier_.salt) + ",i=" + std::to_string(verifier_.iterations);
  expect_ = Expect::final_message;
  AuthStep step;
  append_authentication_request(step.reply, 11, server_first_);
  return step;
}

// client-final-message: c=<binding>,r=<nonce>[,extensions],p=<proof>
AuthStep ScramExchange::client_final(std::string_view message) {
  expect_ = Expect::nothing;  // one client-final per exchange, good or bad
  std::string_view input = message;
  const auto binding = read_scram_attribute(input, 'c');
  if (!binding) return malformed("Expected attribute \"c\" but found " + describe_start(message) + ".");
  const auto binding_bytes = base64_decode(*binding);
  if (!binding_bytes) return malformed("Malformed channel binding in client-final-message.");
  std::string expected_binding = gs2_header_;
  if (plus_) expected_binding.append(options_.channel_binding->begin(), options_.channel_binding->end());
  if (!constant_time_equal(*binding_bytes, as_bytes(expected_binding))) {
    expect_ = Expect::nothing;
    // PostgreSQL's words: a wrong binding is 28000 (the message was well formed); binding data
    // where none was negotiated is a protocol violation.
    if (!plus_)
      return failed(protocol_error("unexpected SCRAM channel-binding attribute in client-final-message"));
    AuthError mismatch = protocol_error("SCRAM channel binding check failed");
    mismatch.sqlstate = sqlstate::kInvalidAuthorizationSpecification;
    return failed(std::move(mismatch));
  }
  const auto nonce = read_scram_attribute(input, 'r');
  if (!nonce || *nonce != nonce_) {
    expect_ = Expect::nothing;
    return failed(protocol_error("invalid SCRAM response", "Nonce does not match."));
  }
  // Extensions, then the proof, which must be last.
  std::size_t proof_at = message.size() - input.size();
  while (!input.empty() && !input.starts_with("p=")) {
    if (input.size() < 2 || input[1] != '=') return malformed("Malformed attribute in client-final-message.");
    const std::size_t comma = input.find(',');
    input.remove_prefix(comma == std::string_view::npos ? input.size() : comma + 1);
    proof_at = message.size() - input.size();
  }
  const auto proof_text = read_scram_attribute(input, 'p');
  if (!proof_text) return malformed("The proof is missing from client-final-message.");
  if (!input.empty()) return malformed("Garbage found at the end of client-final-message.");
  const auto proof = base64_decode(*proof_text);
  if (!proof || proof->size() != Digest{}.size())
    return malformed("Malformed proof in client-final-message.");

  // AuthMessage = client-first-bare "," server-first "," client-final-without-proof
  const std::string without_proof(message.substr(0, proof_at > 0 ? proof_at - 1 : 0));
  const std::string auth_message = client_first_bare_ + "," + server_first_ + "," + without_proof;
  const Digest signature = hmac_sha256(verifier_.stored_key, as_bytes(auth_message));
  Digest client_key{};
  for (std::size_t i = 0; i < client_key.size(); ++i) client_key[i] = (*proof)[i] ^ signature[i];
  const bool proven = constant_time_equal(sha256(client_key), verifier_.stored_key);
  if (!options_.verifier) return failed(password_failed(options_.user, options_.why_no_verifier));
  if (!proven) {
    return failed(
        password_failed(options_.user, "password does not match for user \"" + options_.user + "\""));
  }
  client_key_ = client_key;
  const Digest server_signature = hmac_sha256(verifier_.server_key, as_bytes(auth_message));
  AuthStep step{AuthStep::Verdict::ok, {}, {}};
  append_authentication_request(step.reply, 12, "v=" + base64_encode(server_signature));
  return step;
}

}  // namespace sluice::auth
