// auth.file: PgBouncer's userlist.txt format, one role per line: "user" "secret", a doubled quote
// ("") standing for a quote inside either; lines starting with ';' or '#' are comments, and the
// rest of a line after the secret is ignored, as PgBouncer does.
//
// Secrets must be SCRAM-SHA-256 verifiers or md5 hashes (PostgreSQL's pg_authid.rolpassword
// forms). Plain-text passwords are refused: such a file gives away every password to whoever
// reads it, and a SCRAM login against one would cost the loop a PBKDF2 per login.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "auth/secret.h"
#include "common/result.h"

namespace sluice::auth {

struct FileError {
  int line = 0;
  std::string message;
};

struct AuthFile {
  std::map<std::string, Secret, std::less<>> secrets;

  [[nodiscard]] const Secret* find(std::string_view user) const {
    const auto found = secrets.find(user);
    return found == secrets.end() ? nullptr : &found->second;
  }
};

Result<AuthFile, FileError> parse_auth_file(std::string_view text);

}  // namespace sluice::auth
