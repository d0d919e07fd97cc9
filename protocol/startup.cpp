// Mirrors PostgreSQL's ProcessStartupPacket (postmaster.c): same checks, same
// wording, but every read bounded by the span, since this input is untrusted.
#include "protocol/startup.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string_view>

#include "protocol/sqlstate.h"

namespace sluice::protocol {
namespace {

constexpr std::size_t kLengthSize = 4;
constexpr std::size_t kMinPacket = 8;             // length + version/request code
constexpr std::size_t kCodeOnlyPacket = 8;        // SSLRequest, GSSENCRequest
constexpr std::size_t kCancelRequestPacket = 16;  // length, code, pid, secret

constexpr std::uint32_t major_of(std::uint32_t version) { return version >> 16; }
constexpr std::uint32_t minor_of(std::uint32_t version) { return version & 0xffff; }

Failure<ProtocolError> invalid_length() {
  return {ProtocolError{sqlstate::kProtocolViolation, "invalid length of startup packet"}};
}

Failure<ProtocolError> bad_layout() {
  return {ProtocolError{sqlstate::kProtocolViolation,
                        "invalid startup packet layout: expected terminator as last byte"}};
}

// The NUL-terminated string starting at `offset`, or nullopt when no NUL
// follows inside the packet. `offset` is advanced past the terminator.
std::optional<std::string_view> read_cstring(Bytes packet, std::size_t& offset) {
  const auto* begin = reinterpret_cast<const char*>(packet.data() + offset);
  const auto* nul = static_cast<const char*>(std::memchr(begin, 0, packet.size() - offset));
  if (nul == nullptr) return std::nullopt;
  offset += static_cast<std::size_t>(nul - begin) + 1;
  return std::string_view(begin, static_cast<std::size_t>(nul - begin));
}

// What libpq and most drivers send (user, database, application_name, client_encoding, options,
// DateStyle...): one allocation for the list instead of one per doubling.
constexpr std::size_t kUsualParameters = 8;

Result<StartupPacket, ProtocolError> parse_parameters(Bytes packet, StartupPacket startup) {
  // Pairs until an empty name; that terminator must be the packet's last byte.
  // Any string running off the end fails the same check, as in PostgreSQL.
  std::size_t offset = kMinPacket;
  startup.parameters.reserve(kUsualParameters);
  while (offset < packet.size() && packet[offset] != 0) {
    auto name = read_cstring(packet, offset);
    if (!name || offset >= packet.size()) return bad_layout();
    auto value = read_cstring(packet, offset);
    if (!value) return bad_layout();
    if (name->starts_with("_pq_.")) {
      startup.protocol_options.emplace_back(*name);  // value ignored, as PostgreSQL does
    } else {
      startup.parameters.emplace_back(*name, *value);
    }
  }
  if (offset + 1 != packet.size()) return bad_layout();
  return startup;
}

}  // namespace

const std::string_view* StartupPacket::parameter(std::string_view name) const {
  // Last one wins, like PostgreSQL applying repeated options in order.
  const auto found = std::find_if(parameters.rbegin(), parameters.rend(),
                                  [name](const auto& parameter) { return parameter.first == name; });
  return found == parameters.rend() ? nullptr : &found->second;
}

Result<std::optional<std::uint32_t>, ProtocolError> startup_packet_length(Bytes buffer,
                                                                          std::uint32_t max_length) {
  if (buffer.size() < kLengthSize) return std::optional<std::uint32_t>{};
  const std::uint32_t length = read_u32(buffer.data());
  if (length < kMinPacket || length > max_length) return invalid_length();
  return std::optional<std::uint32_t>{length};
}

Result<StartupPacket, ProtocolError> parse_startup_packet(Bytes packet) {
  // The length prefix must describe exactly this span; trust neither alone.
  if (packet.size() < kMinPacket || read_u32(packet.data()) != packet.size()) {
    return invalid_length();
  }
  const std::uint32_t code = read_u32(packet.data() + kLengthSize);

  StartupPacket startup;
  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (packet.size() != kCodeOnlyPacket) return invalid_length();
      startup.kind = code == kSslRequestCode ? StartupKind::ssl_request : StartupKind::gssenc_request;
      return startup;
    case kCancelRequestCode:
      if (packet.size() != kCancelRequestPacket) return invalid_length();
      startup.kind = StartupKind::cancel_request;
      startup.cancel_process_id = read_u32(packet.data() + 8);
      startup.cancel_secret_key = read_u32(packet.data() + 12);
      return startup;
    default:
      break;
  }

  if (major_of(code) != major_of(kProtocolVersion3)) {
    return Failure{ProtocolError{sqlstate::kFeatureNotSupported,
                                 "unsupported frontend protocol " + std::to_string(major_of(code)) + "." +
                                     std::to_string(minor_of(code)) + ": server supports 3.0 to 3.0"}};
  }
  startup.kind = StartupKind::startup;
  startup.protocol_version = code;
  return parse_parameters(packet, std::move(startup));
}

}  // namespace sluice::protocol
