// libFuzzer target: the client's side of a SCRAM exchange, as sluiced parses it. Byte 0: bit 0
// the client is on TLS (PLUS offered, made-up binding data), bit 1 the role has a verifier (else
// the mock exchange), bit 2 the client picks SCRAM-SHA-256-PLUS, bit 3 the initial response's
// length field lies. The rest: client-first-message, '\n', client-final-message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/scram_exchange.h"

namespace {

using sluice::auth::AuthStep;
using sluice::auth::ScramExchange;

void check(bool condition) {
  if (!condition) std::abort();
}

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// Password "pencil", salt and iterations of RFC 7677: made once, not per input.
const sluice::auth::ScramVerifier& verifier() {
  static const auto made = *sluice::auth::parse_scram_verifier(
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
  return made;
}

sluice::protocol::Bytes bytes(const std::string& text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t flags = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t newline = input.find('\n');
  const std::string first(input.substr(0, newline));
  const std::string final(newline == std::string_view::npos ? "" : input.substr(newline + 1));

  const bool known = (flags & 2) != 0;
  ScramExchange::Options options{.user = "fuzz",
                                 .verifier = std::nullopt,
                                 .why_no_verifier = "mock",
                                 .channel_binding = std::nullopt,
                                 .server_nonce = "fuzznonce"};
  if (known) options.verifier = verifier();
  if ((flags & 1) != 0) options.channel_binding = std::vector<std::uint8_t>{0xde, 0xad, 0xbe, 0xef};
  ScramExchange exchange(options);
  check(!exchange.start().empty());

  const std::string mechanism = (flags & 4) != 0 ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
  const std::uint32_t length = (flags & 8) != 0 ? static_cast<std::uint32_t>(first.size() * 3 + 1)
                                                : static_cast<std::uint32_t>(first.size());
  const AuthStep server_first = exchange.on_response(bytes(mechanism + '\0' + be32(length) + first));
  check(server_first.verdict != AuthStep::Verdict::ok);  // never done after one message
  if (server_first.verdict == AuthStep::Verdict::failed) {
    check(server_first.reply.empty() && server_first.error.sqlstate[0] != '\0');
    check(exchange.on_response(bytes(final)).verdict == AuthStep::Verdict::failed);  // over is over
    return 0;
  }
  check(!server_first.reply.empty() && server_first.reply[0] == 'R');

  const AuthStep verdict = exchange.on_response(bytes(final));
  if (verdict.verdict == AuthStep::Verdict::ok) {
    // Only a real role, and only with the proof of its key.
    check(known && exchange.client_key().has_value());
    check(sluice::auth::sha256(*exchange.client_key()) == verifier().stored_key);
  } else {
    check(verdict.verdict == AuthStep::Verdict::failed && !exchange.client_key());
  }
  check(exchange.on_response(bytes(final)).verdict == AuthStep::Verdict::failed);  // no second final
  return 0;
}
