// What one step of a password exchange produced: bytes for the client and a verdict. The
// exchanges are pure (no socket, no clock), so they can be unit-tested and fuzzed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::auth {

struct AuthError {
  const char* sqlstate = "";
  std::string message;     // to the client, PostgreSQL's wording
  std::string detail;      // to the client, as PostgreSQL's errdetail; may be empty
  std::string log_reason;  // the server log's account; the client never sees it
};

struct AuthStep {
  enum class Verdict { more, ok, failed };
  Verdict verdict = Verdict::more;
  std::string reply;  // Authentication* messages to write before the verdict is acted on
  AuthError error;    // when failed
};

// 'R' with its int32 code and body: AuthenticationSASL (10), SASLContinue (11), SASLFinal (12),
// MD5Password (5).
void append_authentication_request(std::string& out, std::uint32_t code, std::string_view body);

// PostgreSQL's answer for a wrong password, an unknown role, or a role without a usable secret:
// all three look the same to the client.
AuthError password_failed(std::string_view user, std::string log_reason);

}  // namespace sluice::auth
