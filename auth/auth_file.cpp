#include "auth/auth_file.h"

#include "auth/text_lines.h"

namespace sluice::auth {
namespace {

// A quoted field at the front of `line`, "" standing for ". nullopt when there is none.
std::optional<std::string> read_quoted(std::string_view& line) {
  if (line.empty() || line[0] != '"') return std::nullopt;
  std::string value;
  for (std::size_t i = 1; i < line.size(); ++i) {
    if (line[i] != '"') {
      value += line[i];
    } else if (i + 1 < line.size() && line[i + 1] == '"') {
      value += '"';
      ++i;
    } else {
      line.remove_prefix(i + 1);
      return value;
    }
  }
  return std::nullopt;
}

void skip_spaces(std::string_view& line) {
  while (!line.empty() && is_blank(line[0])) line.remove_prefix(1);
}

}  // namespace

Result<AuthFile, FileError> parse_auth_file(std::string_view text) {
  AuthFile file;
  TextLines lines(text);
  for (std::string_view line; lines.next(line);) {
    const int number = lines.number();
    skip_spaces(line);
    if (line.empty() || line[0] == ';' || line[0] == '#') continue;
    auto user = read_quoted(line);
    skip_spaces(line);
    auto secret_text = read_quoted(line);
    if (!user || !secret_text) return Failure{FileError{number, R"(expected "user" "secret")"}};
    if (user->empty()) return Failure{FileError{number, "the user name is empty"}};
    auto secret = parse_secret(*secret_text);
    if (!secret) {
      return Failure{FileError{number, "the secret of user \"" + *user +
                                           "\" is neither a SCRAM-SHA-256 verifier nor an md5 hash "
                                           "(plain-text passwords are not accepted)"}};
    }
    if (file.secrets.contains(*user))
      return Failure{FileError{number, "user \"" + *user + "\" appears twice"}};
    file.secrets.emplace(std::move(*user), std::move(*secret));
  }
  return file;
}

}  // namespace sluice::auth
