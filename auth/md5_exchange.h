// The server side of legacy md5 authentication: AuthenticationMD5Password with a random 4-byte
// salt out, PasswordMessage "md5" || md5(md5(password || user) || salt) in. Pure, like
// ScramExchange. A role without an md5 hash still gets the challenge and fails only on the answer.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "auth/auth_step.h"
#include "auth/secret.h"
#include "protocol/wire.h"

namespace sluice::auth {

class Md5Exchange {
 public:
  struct Options {
    std::string user;
    Md5Hash hash;  // a role without one gets the SCRAM mock exchange instead (frontend/client_auth)
    std::optional<std::array<std::uint8_t, 4>> salt;  // nullopt: random (tests fix it)
  };

  explicit Md5Exchange(Options options);

  [[nodiscard]] std::string start() const;
  // The PasswordMessage body.
  AuthStep on_response(protocol::Bytes body);

 private:
  Options options_;
  std::array<std::uint8_t, 4> salt_{};
  bool answered_ = false;
};

// What a client sends for `password` (tests, and the hash PostgreSQL stores: md5_client_response's
// inner part).
std::string md5_password_hash(std::string_view password, std::string_view user);
std::string md5_client_response(std::string_view password, std::string_view user,
                                const std::array<std::uint8_t, 4>& salt);

}  // namespace sluice::auth
