#include "metrics/client_counters.h"

namespace sluice::metrics {

std::string_view login_result_name(LoginResult result) {
  switch (result) {
    case LoginResult::ok:
      return "ok";
    case LoginResult::auth_failed:
      return "auth_failed";
    case LoginResult::unknown_database:
      return "unknown_database";
    case LoginResult::refused:
      return "refused";
    case LoginResult::failed:
      return "failed";
  }
  return "failed";
}

LoginResult login_result_of(std::string_view sqlstate) {
  const std::string_view error_class = sqlstate.substr(0, 2);
  if (error_class == "28") return LoginResult::auth_failed;
  if (sqlstate == "3D000") return LoginResult::unknown_database;
  if (error_class == "53" || error_class == "57") return LoginResult::refused;
  return LoginResult::failed;
}

void ClientCounters::error_sent(std::string_view sqlstate) {
  // A malformed code still counts, as class "??": every error sent is in the total.
  const bool valid = sqlstate.size() == 5;
  const std::string_view error_class = valid ? sqlstate.substr(0, 2) : std::string_view("??");
  const auto found = errors_.find(error_class);
  if (found != errors_.end()) {
    ++found->second;
  } else {
    errors_.emplace(std::string(error_class), 1);
  }
}

void ClientCounters::merge(const ClientCounters& other) {
  for (std::size_t i = 0; i < kLoginResultCount; ++i) logins_[i] += other.logins_[i];
  for (const auto& [error_class, count] : other.errors_) errors_[error_class] += count;
}

}  // namespace sluice::metrics
