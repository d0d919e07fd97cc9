#include "auth/auth_step.h"

#include "protocol/sqlstate.h"
#include "protocol/wire.h"

namespace sluice::auth {

void append_authentication_request(std::string& out, std::uint32_t code, std::string_view body) {
  out.push_back('R');
  protocol::append_u32(out, static_cast<std::uint32_t>(8 + body.size()));
  protocol::append_u32(out, code);
  out.append(body);
}

AuthError password_failed(std::string_view user, std::string log_reason) {
  return AuthError{.sqlstate = sqlstate::kInvalidPassword,
                   .message = "password authentication failed for user \"" + std::string(user) + "\"",
                   .detail = {},
                   .log_reason = std::move(log_reason)};
}

}  // namespace sluice::auth
