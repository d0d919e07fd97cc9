// Standard v3 encodings: type byte, int32 length (itself included), body.
#include "protocol/backend_messages.h"

#include "protocol/wire.h"

namespace sluice::protocol {
namespace {

// Writes the type byte and a placeholder length; returns where the length sits.
std::size_t begin_message(std::string& out, char type) {
  out.push_back(type);
  const std::size_t length_at = out.size();
  append_u32(out, 0);
  return length_at;
}

void end_message(std::string& out, std::size_t length_at) {
  const auto length = static_cast<std::uint32_t>(out.size() - length_at);
  write_u32(out.data() + length_at, length);
}

// A NUL inside a field would end it early on the reader's side and the rest
// would be misread as further fields, so the field stops at the first NUL.
void append_cstring(std::string& out, std::string_view text) {
  out.append(text.substr(0, text.find('\0')));
  out.push_back('\0');
}

void append_field(std::string& out, char code, std::string_view text) {
  out.push_back(code);
  append_cstring(out, text);
}

}  // namespace

void append_error_response(std::string& out, Severity severity, std::string_view sqlstate,
                           std::string_view message, std::string_view detail) {
  const std::string_view level = severity == Severity::fatal ? "FATAL" : "ERROR";
  const std::size_t at = begin_message(out, 'E');
  append_field(out, 'S', level);
  append_field(out, 'V', level);  // the non-localized copy drivers match on
  append_field(out, 'C', sqlstate);
  append_field(out, 'M', message);
  if (!detail.empty()) append_field(out, 'D', detail);
  out.push_back('\0');
  end_message(out, at);
}

void append_notice_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                            std::string_view message) {
  const std::size_t at = begin_message(out, 'N');
  append_field(out, 'S', severity);
  append_field(out, 'V', severity);
  append_field(out, 'C', sqlstate);
  append_field(out, 'M', message);
  out.push_back('\0');
  end_message(out, at);
}

// The fixed-size messages of every login in one append each: a login per transaction makes them hot.
void append_authentication_ok(std::string& out) {
  static constexpr char kMessage[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0};  // length 8, code 0: AuthenticationOk
  out.append(kMessage, sizeof kMessage);
}

void append_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  const std::size_t at = begin_message(out, 'S');
  append_cstring(out, name);
  append_cstring(out, value);
  end_message(out, at);
}

void append_parameter_statuses(std::string& out,
                               const std::vector<std::pair<std::string, std::string>>& parameters) {
  for (const auto& [name, value] : parameters) append_parameter_status(out, name, value);
}

void append_backend_key_data(std::string& out, std::uint32_t process_id, std::uint32_t secret_key) {
  char message[] = {'K', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0};
  write_u32(message + 5, process_id);
  write_u32(message + 9, secret_key);
  out.append(message, sizeof message);
}

void append_ready_for_query(std::string& out, char transaction_status) {
  const char message[] = {'Z', 0, 0, 0, 5, transaction_status};
  out.append(message, sizeof message);
}

void append_negotiate_protocol_version(std::string& out, std::uint32_t newest_minor,
                                       const std::vector<std::string>& unrecognized_options) {
  const std::size_t at = begin_message(out, 'v');
  append_u32(out, newest_minor);
  append_u32(out, static_cast<std::uint32_t>(unrecognized_options.size()));
  for (const auto& option : unrecognized_options) append_cstring(out, option);
  end_message(out, at);
}

void append_query(std::string& out, std::string_view sql) {
  // Not cut at an embedded NUL: running a prefix of the SQL could do harm,
  // whereas the server rejects a Query with bytes after its string outright.
  const std::size_t at = begin_message(out, 'Q');
  out.append(sql);
  out.push_back('\0');
  end_message(out, at);
}

void append_terminate(std::string& out) {
  const std::size_t at = begin_message(out, 'X');
  end_message(out, at);
}

}  // namespace sluice::protocol
