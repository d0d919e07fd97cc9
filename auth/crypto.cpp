#include "auth/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "common/hex.h"

namespace sluice::auth {

ByteView as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

Digest sha256(ByteView data) {
  Digest out{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr) != 1) std::abort();
  return out;
}

Digest hmac_sha256(ByteView key, ByteView data) {
  Digest out{};
  unsigned int size = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(),
           &size) == nullptr) {
    std::abort();
  }
  return out;
}

Digest pbkdf2_sha256(std::string_view password, ByteView salt, int iterations) {
  Digest out{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(), static_cast<int>(out.size()),
                        out.data()) != 1) {
    std::abort();
  }
  return out;
}

std::string md5_hex(std::string_view data) {
  std::array<std::uint8_t, 16> digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_md5(), nullptr) != 1) std::abort();
  return to_hex({reinterpret_cast<const char*>(digest.data()), digest.size()});
}

void random_bytes(std::span<std::uint8_t> out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) std::abort();
}

bool constant_time_equal(ByteView a, ByteView b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string base64_encode(ByteView data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < data.size(); i += 3) {
    const std::size_t left = data.size() - i;
    const std::uint32_t block = std::uint32_t{data[i]} << 16 |
                                (left > 1 ? std::uint32_t{data[i + 1]} << 8 : 0) |
                                (left > 2 ? std::uint32_t{data[i + 2]} : 0);
    out += kAlphabet[block >> 18 & 63];
    out += kAlphabet[block >> 12 & 63];
    out += left > 1 ? kAlphabet[block >> 6 & 63] : '=';
    out += left > 2 ? kAlphabet[block & 63] : '=';
  }
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int padding = last ? (text[i + 3] == '=' ? 1 : 0) + (text[i + 2] == '=' ? 1 : 0) : 0;
    if (padding == 1 && text[i + 2] == '=') return std::nullopt;  // "x=y=" is not canonical
    std::uint32_t block = 0;
    for (int j = 0; j < 4; ++j) {
      const int value = j >= 4 - padding ? 0 : sextet(text[i + static_cast<std::size_t>(j)]);
      if (value < 0) return std::nullopt;
      block = block << 6 | static_cast<std::uint32_t>(value);
    }
    out.push_back(static_cast<std::uint8_t>(block >> 16));
    if (padding < 2) out.push_back(static_cast<std::uint8_t>(block >> 8));
    if (padding < 1) out.push_back(static_cast<std::uint8_t>(block));
  }
  return out;
}

}  // namespace sluice::auth
