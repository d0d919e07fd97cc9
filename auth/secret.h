// What sluiced stores for a role instead of its password: a SCRAM-SHA-256 verifier, or a legacy
// md5 hash, in PostgreSQL's own text forms (pg_authid.rolpassword), so a secret can be copied
// from the server or from PgBouncer's userlist.txt unchanged.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/crypto.h"

namespace sluice::auth {

// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, all base64.
struct ScramVerifier {
  int iterations = 0;
  std::vector<std::uint8_t> salt;
  Digest stored_key{};
  Digest server_key{};
};

// md5<32 lower-case hex>: MD5(password || user name).
struct Md5Hash {
  std::string hex;
};

using Secret = std::variant<ScramVerifier, Md5Hash>;

// nullopt for anything else, plain text included.
std::optional<ScramVerifier> parse_scram_verifier(std::string_view text);
std::optional<Secret> parse_secret(std::string_view text);

// What PostgreSQL stores for `password` (tests, and the fake verifier of unknown users).
ScramVerifier make_scram_verifier(std::string_view password, ByteView salt, int iterations);
std::string format_scram_verifier(const ScramVerifier& verifier);

inline constexpr int kDefaultScramIterations = 4096;  // PostgreSQL's scram_iterations default

}  // namespace sluice::auth
