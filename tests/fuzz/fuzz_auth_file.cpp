// libFuzzer target: an auth.file's text (auth/auth_file.h), and every secret it yields written
// back in PostgreSQL's form and read again unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "auth/auth_file.h"

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto file = sluice::auth::parse_auth_file(text);
  if (!file) {
    check(file.error().line >= 1 && !file.error().message.empty());
    return 0;
  }
  for (const auto& [user, secret] : file->secrets) {
    check(!user.empty());
    if (const auto* verifier = std::get_if<sluice::auth::ScramVerifier>(&secret)) {
      const auto again = sluice::auth::parse_scram_verifier(sluice::auth::format_scram_verifier(*verifier));
      check(again && again->iterations == verifier->iterations && again->salt == verifier->salt &&
            again->stored_key == verifier->stored_key && again->server_key == verifier->server_key);
    } else {
      check(std::get<sluice::auth::Md5Hash>(secret).hex.size() == 32);
    }
  }
  return 0;
}
