#include "auth/secret.h"

#include <algorithm>
#include <charconv>

namespace sluice::auth {
namespace {

std::optional<Digest> decode_digest(std::string_view text) {
  const auto bytes = base64_decode(text);
  if (!bytes || bytes->size() != Digest{}.size()) return std::nullopt;
  Digest digest{};
  std::copy(bytes->begin(), bytes->end(), digest.begin());
  return digest;
}

}  // namespace

std::optional<ScramVerifier> parse_scram_verifier(std::string_view text) {
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (!text.starts_with(kPrefix)) return std::nullopt;
  text.remove_prefix(kPrefix.size());
  const std::size_t colon = text.find(':');
  const std::size_t dollar = text.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar)
    return std::nullopt;
  ScramVerifier verifier;
  const std::string_view iterations = text.substr(0, colon);
  const auto [end, error] =
      std::from_chars(iterations.data(), iterations.data() + iterations.size(), verifier.iterations);
  if (error != std::errc() || end != iterations.data() + iterations.size() || verifier.iterations < 1) {
    return std::nullopt;
  }
  auto salt = base64_decode(text.substr(colon + 1, dollar - colon - 1));
  if (!salt || salt->empty()) return std::nullopt;
  verifier.salt = std::move(*salt);
  const std::string_view keys = text.substr(dollar + 1);
  const std::size_t key_colon = keys.find(':');
  if (key_colon == std::string_view::npos) return std::nullopt;
  const auto stored = decode_digest(keys.substr(0, key_colon));
  const auto server = decode_digest(keys.substr(key_colon + 1));
  if (!stored || !server) return std::nullopt;
  verifier.stored_key = *stored;
  verifier.server_key = *server;
  return verifier;
}

std::optional<Secret> parse_secret(std::string_view text) {
  if (auto verifier = parse_scram_verifier(text)) return Secret{std::move(*verifier)};
  const bool md5 = text.size() == 35 && text.starts_with("md5") &&
                   std::all_of(text.begin() + 3, text.end(),
                               [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (md5) return Secret{Md5Hash{std::string(text.substr(3))}};
  return std::nullopt;
}

ScramVerifier make_scram_verifier(std::string_view password, ByteView salt, int iterations) {
  const Digest salted = pbkdf2_sha256(password, salt, iterations);
  const Digest client_key = hmac_sha256(salted, as_bytes("Client Key"));
  return ScramVerifier{.iterations = iterations,
                       .salt = {salt.begin(), salt.end()},
                       .stored_key = sha256(client_key),
                       .server_key = hmac_sha256(salted, as_bytes("Server Key"))};
}

std::string format_scram_verifier(const ScramVerifier& verifier) {
  return "SCRAM-SHA-256$" + std::to_string(verifier.iterations) + ":" + base64_encode(verifier.salt) + "$" +
         base64_encode(verifier.stored_key) + ":" + base64_encode(verifier.server_key);
}

}  // namespace sluice::auth
