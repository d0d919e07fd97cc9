// libFuzzer target: SCRAM pass-through's client side of a SCRAM exchange (auth/scram_client), as
// it parses what a server sends. Byte 0: bit 0 the mechanism list is the input's first line (else
// a well-formed one); bit 1 the client is on TLS (with a certificate hash, or none when bit 4);
// bits 2-3 its channel_binding (disable, prefer, require). The rest: [mechanisms '\n']
// server-first-message '\n' server-final-message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/scram_client.h"

namespace {

using sluice::auth::ClientChannelBinding;
using sluice::auth::ScramClient;

void check(bool condition) {
  if (!condition) std::abort();
}

sluice::protocol::Bytes bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

std::string_view next_line(std::string_view& input) {
  const std::size_t newline = input.find('\n');
  const std::string_view line = input.substr(0, newline);
  input.remove_prefix(newline == std::string_view::npos ? input.size() : newline + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool fuzz_mechanisms = (data[0] & 1) != 0;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string mechanisms =
      fuzz_mechanisms ? std::string(next_line(input)) : std::string("SCRAM-SHA-256") + '\0' + '\0';
  const std::string_view server_first = next_line(input);
  const std::string_view server_final = input;

  ClientChannelBinding binding;
  binding.tls = (data[0] & 2) != 0;
  if (binding.tls && (data[0] & 16) == 0) binding.end_point.assign(32, 0x5a);
  const int policy = (data[0] >> 2) & 3;
  binding.policy = policy == 0   ? ClientChannelBinding::Policy::disable
                   : policy == 2 ? ClientChannelBinding::Policy::require
                                 : ClientChannelBinding::Policy::prefer;
  // A fixed nonce, so that inputs can reach past the nonce check.
  ScramClient client(sluice::auth::ScramKeys{}, "fuzznonce", {}, binding);
  const auto initial = client.on_mechanisms(bytes(mechanisms));
  if (!initial) {
    check(!initial.error().empty());
    check(!client.on_server_first(bytes(server_first)));  // over is over
    return 0;
  }
  check(initial->size() > 5 && (*initial)[0] == 'p');
  // Bound only over TLS, and never when disabled; require is bound or refused.
  check(!client.channel_bound() || (binding.tls && binding.policy != ClientChannelBinding::Policy::disable));
  check(client.channel_bound() || binding.policy != ClientChannelBinding::Policy::require);
  const auto final_message = client.on_server_first(bytes(server_first));
  if (!final_message) {
    check(client.on_server_final(bytes(server_final)).has_value());
    return 0;
  }
  check(server_first.starts_with("r=fuzznonce") && (*final_message)[0] == 'p');
  const auto verdict = client.on_server_final(bytes(server_final));
  check(!verdict || !verdict->empty());
  check(client.on_server_final(bytes(server_final)).has_value());  // no second final
  return 0;
}
