// Reading PostgreSQL's errors: the fields of an ErrorResponse or
// NoticeResponse, and the same three fields out of the text libpq makes of a
// failed connect when its error verbosity is PQERRORS_VERBOSE. Pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "protocol/wire.h"

namespace sluice::protocol {

struct ErrorFields {
  std::string severity;  // non-localized (V) when the server sent it, else S
  std::string sqlstate;
  std::string message;
  // "FATAL 57P01 terminating connection due to administrator command"
  [[nodiscard]] std::string describe() const;
};

// One whole 'E' or 'N' message, type byte and length included; nullopt when malformed.
std::optional<ErrorFields> read_error_fields(Bytes message);

// libpq's verbose connect error: "... failed: FATAL:  53300: sorry, too many clients already\n...".
std::optional<ErrorFields> find_verbose_error(std::string_view libpq_text);

}  // namespace sluice::protocol
