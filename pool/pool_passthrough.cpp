// SCRAM pass-through, the pool's side (README "Authentication"): which servers log in with a
// client's ClientKey, and what a refusal of one means.
#include <algorithm>

#include "common/log.h"
#include "pool/pool.h"
#include "protocol/sqlstate.h"

namespace sluice::pool {
namespace {

bool holds_password(const std::vector<std::string>& keywords) {
  return std::find(keywords.begin(), keywords.end(), "password") != keywords.end();
}

}  // namespace

bool Pool::may_pass_through() const {
  return !holds_password(connect_keywords_) && passthrough_allowed(connect_keywords_, connect_values_) &&
         server_tls() != nullptr;
}

std::optional<auth::ScramKeys> Pool::passthrough_keys() const {
  if (!passthrough_possible_ || context_.scram_keys == nullptr) return std::nullopt;
  return context_.scram_keys->find(key_.database, server_user());
}

void Pool::passthrough_connect_failed(const ServerConnection& server, const std::string& reason,
                                      ConnectFailure& failure) {
  if (const auto& keys = server.passthrough_keys()) {
    if (reason.starts_with(ServerLogin::kRefusedPrefix))
      failure = {sqlstate::kInvalidAuthorizationSpecification, reason, false};
    // Invalid authorization (28xxx): the server's verifier is not the one the client proved its key
    // against (the password changed, or auth.file is stale). The client hears PostgreSQL's error; the
    // next SCRAM login brings a fresh key.
    if (failure.sqlstate.starts_with("28")) {
      context_.scram_keys->forget(key_.database, server_user(), *keys);
      log::warning("pool ", name_, ": the SCRAM pass-through login of role \"", server_user(),
                   "\" was refused; its key is forgotten until the role's next SCRAM login");
    }
    return;
  }
  // libpq 15's words when the server asks for a password the conninfo does not hold.
  if (reason.find("no password supplied") == std::string::npos || holds_password(connect_keywords_)) return;
  failure = {
      sqlstate::kInvalidPassword,
      "server login failed: no password for role \"" + server_user() + "\": the conninfo holds none" +
          (passthrough_possible_ ? " and no client has logged in with SCRAM to pass through"
                                 : ", and SCRAM pass-through serves no conninfo that lists several hosts"),
      false};
}

}  // namespace sluice::pool
