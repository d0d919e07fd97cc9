// One worker's count of what its clients were told: logins by result and
// ErrorResponses by SQLSTATE class. Bumped only when a login ends or an error
// goes out, never on the common path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace sluice::metrics {

enum class LoginResult : std::size_t {
  ok,
  auth_failed,       // SQLSTATE class 28
  unknown_database,  // 3D000
  refused,           // shutting down, too many clients (class 53, 57)
  failed,            // anything else: a bad startup packet, a login timeout, a lost server
};
inline constexpr std::size_t kLoginResultCount = 5;
std::string_view login_result_name(LoginResult result);
// What a login refused with `sqlstate` counts as.
LoginResult login_result_of(std::string_view sqlstate);

class ClientCounters {
 public:
  void login(LoginResult result) { ++logins_[static_cast<std::size_t>(result)]; }
  // An ErrorResponse sent to a client (sluiced's own, or PostgreSQL's forwarded).
  void error_sent(std::string_view sqlstate);
  void merge(const ClientCounters& other);

  [[nodiscard]] std::uint64_t logins(LoginResult result) const {
    return logins_[static_cast<std::size_t>(result)];
  }
  // By class: the SQLSTATE's first two characters.
  [[nodiscard]] const std::map<std::string, std::uint64_t, std::less<>>& errors() const { return errors_; }

 private:
  std::array<std::uint64_t, kLoginResultCount> logins_{};
  std::map<std::string, std::uint64_t, std::less<>> errors_;
};

}  // namespace sluice::metrics
