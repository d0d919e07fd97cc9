#include "auth/scram_client.h"

#include <array>
#include <charconv>
#include <cstring>

#include "auth/scram_syntax.h"

namespace sluice::auth {
namespace {

constexpr std::string_view kScram = "SCRAM-SHA-256";
constexpr std::string_view kScramPlus = "SCRAM-SHA-256-PLUS";
constexpr std::size_t kRawNonceLength = 18;  // libpq's SCRAM_RAW_NONCE_LEN

std::string_view text_of(protocol::Bytes body) {
  return {reinterpret_cast<const char*>(body.data()), body.size()};
}

// 'p' with `body`: SASLInitialResponse and SASLResponse share the type byte.
std::string password_message(std::string_view body) {
  std::string out(1, 'p');
  protocol::append_u32(out, static_cast<std::uint32_t>(4 + body.size()));
  out.append(body);
  return out;
}

}  // namespace

ScramClient::ScramClient(ScramKeys keys, std::string client_nonce, const std::string& user,
                         ClientChannelBinding binding)
    : keys_(keys), binding_(std::move(binding)), client_nonce_(std::move(client_nonce)) {
  if (client_nonce_.empty()) {
    std::array<std::uint8_t, kRawNonceLength> raw{};
    random_bytes(raw);
    client_nonce_ = base64_encode(raw);
  }
  client_first_bare_ = "n=" + user + ",r=" + client_nonce_;
}

// libpq 15's choice (pg_SASL_init) and its words.
Result<std::string> ScramClient::on_mechanisms(protocol::Bytes body) {
  if (expect_ != Expect::mechanisms) return fail("unexpected AuthenticationSASL");
  expect_ = Expect::nothing;
  using Policy = ClientChannelBinding::Policy;
  if (binding_.policy == Policy::require && !binding_.tls)
    return fail("channel binding required, but SSL not in use");
  // A list of NUL-terminated names ending with an empty one.
  std::string_view list = text_of(body);
  bool plain_offered = false;
  bool plus_offered = false;
  while (!list.empty() && list.front() != '\0') {
    const std::size_t nul = list.find('\0');
    if (nul == std::string_view::npos) return fail("malformed AuthenticationSASL message");
    plain_offered = plain_offered || list.substr(0, nul) == kScram;
    plus_offered = plus_offered || list.substr(0, nul) == kScramPlus;
    list.remove_prefix(nul + 1);
  }
  // PostgreSQL offers PLUS only over TLS: offered in plain text, the TLS was stripped on the way.
  if (plus_offered && !binding_.tls)
    return fail("server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection");
  plus_ = plus_offered && binding_.policy != Policy::disable;
  if (!plus_ && !plain_offered) return fail("the server does not offer SCRAM-SHA-256");
  if (binding_.policy == Policy::require && !plus_) {
    return fail(
        "channel binding is required, but server did not offer an authentication method that supports "
        "channel binding");
  }
  if (plus_ && binding_.end_point.empty())
    return fail("could not determine server certificate signature algorithm");
  // "y": this client could bind, and believes the server cannot; a server that offered PLUS would
  // then know the offer was stripped.
  gs2_header_ = plus_                                                ? "p=tls-server-end-point,,"
                : binding_.tls && binding_.policy != Policy::disable ? "y,,"
                                                                     : "n,,";
  const std::string client_first = gs2_header_ + client_first_bare_;
  std::string body_out(plus_ ? kScramPlus : kScram);
  body_out.push_back('\0');
  protocol::append_u32(body_out, static_cast<std::uint32_t>(client_first.size()));
  body_out += client_first;
  expect_ = Expect::server_first;
  return password_message(body_out);
}

// server-first-message: r=<client nonce + server nonce>,s=<salt>,i=<iterations>[,extensions]
Result<std::string> ScramClient::on_server_first(protocol::Bytes body) {
  if (expect_ != Expect::server_first) return fail("unexpected AuthenticationSASLContinue");
  expect_ = Expect::nothing;
  const std::string_view server_first = text_of(body);
  std::string_view input = server_first;
  if (input.starts_with("m=")) return fail("the server requires an unsupported SCRAM extension");
  const auto nonce = read_scram_attribute(input, 'r');
  if (!nonce || nonce->size() <= client_nonce_.size() || !nonce->starts_with(client_nonce_))
    return fail("invalid SCRAM response (nonce mismatch)");
  const auto salt = read_scram_attribute(input, 's');
  if (!salt || !base64_decode(*salt)) return fail("malformed SCRAM message (invalid salt)");
  const auto iterations = read_scram_attribute(input, 'i');
  int count = 0;
  if (!iterations || iterations->empty() ||
      std::from_chars(iterations->data(), iterations->data() + iterations->size(), count).ptr !=
          iterations->data() + iterations->size() ||
      count <= 0) {
    return fail("malformed SCRAM message (invalid iteration count)");
  }
  // The salt and iteration count went into the ClientKey the client derived: nothing to compute.
  // c=: the gs2 header again, with the certificate hash when bound (RFC 5802 section 7).
  std::string binding = gs2_header_;
  if (plus_) binding.append(binding_.end_point.begin(), binding_.end_point.end());
  const std::string without_proof = "c=" + base64_encode(as_bytes(binding)) + ",r=" + std::string(*nonce);
  auth_message_ = client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
  const Digest stored_key = sha256(keys_.client_key);
  const Digest signature = hmac_sha256(stored_key, as_bytes(auth_message_));
  Digest proof{};
  for (std::size_t i = 0; i < proof.size(); ++i) proof[i] = keys_.client_key[i] ^ signature[i];
  expect_ = Expect::server_final;
  return password_message(without_proof + ",p=" + base64_encode(proof));
}

// server-final-message: v=<ServerSignature>, or e=<error>.
std::optional<std::string> ScramClient::on_server_final(protocol::Bytes body) {
  if (expect_ != Expect::server_final) return "unexpected AuthenticationSASLFinal";
  expect_ = Expect::nothing;
  std::string_view input = text_of(body);
  if (const auto error = read_scram_attribute(input, 'e'))
    return "the server refused the SCRAM proof: " + std::string(*error);
  const auto signature_text = read_scram_attribute(input, 'v');
  if (!signature_text) return "malformed SCRAM message (no server signature)";
  const auto signature = base64_decode(*signature_text);
  if (!signature || signature->size() != Digest{}.size())
    return "malformed SCRAM message (malformed server signature)";
  const Digest expected = hmac_sha256(keys_.server_key, as_bytes(auth_message_));
  if (!constant_time_equal(*signature, expected)) return "invalid server signature";
  return std::nullopt;
}

}  // namespace sluice::auth
