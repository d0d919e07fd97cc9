#include "auth/md5_exchange.h"

#include <utility>

#include "protocol/sqlstate.h"

namespace sluice::auth {
namespace {

std::string salted(std::string_view hex, const std::array<std::uint8_t, 4>& salt) {
  std::string input(hex);
  input.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  return "md5" + md5_hex(input);
}

}  // namespace

std::string md5_password_hash(std::string_view password, std::string_view user) {
  return md5_hex(std::string(password) + std::string(user));
}

std::string md5_client_response(std::string_view password, std::string_view user,
                                const std::array<std::uint8_t, 4>& salt) {
  return salted(md5_password_hash(password, user), salt);
}

Md5Exchange::Md5Exchange(Options options) : options_(std::move(options)) {
  if (options_.salt) {
    salt_ = *options_.salt;
  } else {
    random_bytes(salt_);
  }
}

std::string Md5Exchange::start() const {
  std::string out;
  append_authentication_request(out, 5, {reinterpret_cast<const char*>(salt_.data()), salt_.size()});
  return out;
}

AuthStep Md5Exchange::on_response(protocol::Bytes body) {
  const std::string_view text(reinterpret_cast<const char*>(body.data()), body.size());
  const bool first = !std::exchange(answered_, true);  // one answer per challenge, good or bad
  if (!first || text.empty() || text.back() != '\0' || text.find('\0') != text.size() - 1) {
    return AuthStep{AuthStep::Verdict::failed,
                    {},
                    AuthError{.sqlstate = sqlstate::kProtocolViolation,
                              .message = "invalid password packet size",
                              .detail = {},
                              .log_reason = "malformed password packet"}};
  }
  const std::string_view answer = text.substr(0, text.size() - 1);
  const std::string expected = salted(options_.hash.hex, salt_);
  if (!constant_time_equal(as_bytes(answer), as_bytes(expected))) {
    return {AuthStep::Verdict::failed,
            {},
            password_failed(options_.user, "password does not match for user \"" + options_.user + "\"")};
  }
  return {AuthStep::Verdict::ok, {}, {}};
}

}  // namespace sluice::auth
