// The few primitives password authentication needs, from OpenSSL: SHA-256,
// HMAC-SHA-256, PBKDF2, MD5 (legacy md5 auth), random bytes, a compare whose
// time does not depend on where the inputs differ, and strict base64.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::auth {

using Digest = std::array<std::uint8_t, 32>;  // SHA-256
using ByteView = std::span<const std::uint8_t>;

ByteView as_bytes(std::string_view text);

Digest sha256(ByteView data);
Digest hmac_sha256(ByteView key, ByteView data);
// PostgreSQL's SaltedPassword: PBKDF2-HMAC-SHA-256, one 32-byte block.
Digest pbkdf2_sha256(std::string_view password, ByteView salt, int iterations);
// Lower-case hex of MD5(data), as PostgreSQL's md5 password hashes are written.
std::string md5_hex(std::string_view data);

// Cryptographically strong random bytes; aborts if OpenSSL's generator cannot give any
// (a login must never go on with predictable nonces).
void random_bytes(std::span<std::uint8_t> out);

bool constant_time_equal(ByteView a, ByteView b);

std::string base64_encode(ByteView data);
// nullopt for anything but canonical padded base64.
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

}  // namespace sluice::auth
