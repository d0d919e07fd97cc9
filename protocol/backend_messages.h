// Builders for the few messages sluiced writes itself (everything else is
// forwarded untouched). Each appends one whole message to `out`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol {

enum class Severity { error, fatal };

// 'E' with S/V (severity), C (SQLSTATE), M (message) and, when non-empty, D (detail).
void append_error_response(std::string& out, Severity severity, std::string_view sqlstate,
                           std::string_view message, std::string_view detail = {});
// 'N' NoticeResponse at severity NOTICE/WARNING with the given SQLSTATE.
void append_notice_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                            std::string_view message);
void append_authentication_ok(std::string& out);
void append_parameter_status(std::string& out, std::string_view name, std::string_view value);
void append_parameter_statuses(std::string& out,
                               const std::vector<std::pair<std::string, std::string>>& parameters);
void append_backend_key_data(std::string& out, std::uint32_t process_id, std::uint32_t secret_key);
void append_ready_for_query(std::string& out, char transaction_status);
void append_negotiate_protocol_version(std::string& out, std::uint32_t newest_minor,
                                       const std::vector<std::string>& unrecognized_options);
// Frontend messages sluiced sends to servers on its own (ROLLBACK, DISCARD ALL).
void append_query(std::string& out, std::string_view sql);
void append_terminate(std::string& out);

}  // namespace sluice::protocol
