// The untyped first packet of a connection: StartupMessage, SSLRequest,
// GSSENCRequest or CancelRequest. Pure parsing, lengths checked.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "protocol/wire.h"

namespace sluice::protocol {

inline constexpr std::uint32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr std::uint32_t kCancelRequestCode = 80877102;
inline constexpr std::uint32_t kSslRequestCode = 80877103;
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;
inline constexpr std::uint32_t kDefaultMaxStartupPacket = 10000;  // PostgreSQL's MAX_STARTUP_PACKET_LENGTH

enum class StartupKind { startup, ssl_request, gssenc_request, cancel_request };

struct StartupPacket {
  StartupKind kind = StartupKind::startup;
  std::uint32_t protocol_version = 0;  // startup: major << 16 | minor
  // startup: name/value pairs in order, "_pq_." protocol options excluded. They point into the
  // parsed bytes, which must outlive them: a login copies only what it keeps.
  std::vector<std::pair<std::string_view, std::string_view>> parameters;
  std::vector<std::string> protocol_options;  // startup: "_pq_.*" names, to be refused by negotiation
  std::uint32_t cancel_process_id = 0;        // cancel_request
  std::uint32_t cancel_secret_key = 0;        // cancel_request

  [[nodiscard]] const std::string_view* parameter(std::string_view name) const;
};

struct ProtocolError {
  const char* sqlstate;  // one of sqlstate.h
  std::string message;   // PostgreSQL's wording where it has one
};

// Length of the packet at the front of `buffer` (the 4-byte length prefix
// included) once 4 bytes are there; an error for a length below 8 or above
// `max_length`.
Result<std::optional<std::uint32_t>, ProtocolError> startup_packet_length(Bytes buffer,
                                                                          std::uint32_t max_length);

// Parses one whole packet (as delimited by startup_packet_length); its parameters point into it.
// Unsupported major versions are an error with PostgreSQL's 0A000 wording; a
// 3.x minor above 0 parses (the caller answers NegotiateProtocolVersion).
Result<StartupPacket, ProtocolError> parse_startup_packet(Bytes packet);

}  // namespace sluice::protocol
