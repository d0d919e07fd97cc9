// libFuzzer target: the first bytes a client sends. The input's first byte
// picks a split point; the rest is the client's byte stream: a startup packet
// (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), then v3 messages.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "protocol/message_scanner.h"
#include "protocol/startup.h"

namespace {

using sluice::protocol::Bytes;
using sluice::protocol::MessageEvent;
using sluice::protocol::MessageScanner;
using sluice::protocol::ScanResult;
using sluice::protocol::ScanStatus;

// Small enough that the fuzzer reaches too_long with a short input.
constexpr std::uint32_t kMaxMessage = 1 << 16;

struct Seen {
  char type;
  std::uint32_t length;
  std::uint8_t first_byte;
  bool operator==(const Seen&) const = default;
};

// A broken invariant is a crash, so that libFuzzer keeps the input.
void check(bool condition) {
  if (!condition) std::abort();
}

// Scans `chunks` in order as one stream; returns every message reported and
// the final status, checking the scanner's contract on the way.
ScanStatus scan_stream(const std::vector<Bytes>& chunks, std::vector<Seen>& seen) {
  MessageScanner scanner(kMaxMessage);
  for (const Bytes chunk : chunks) {
    const ScanResult result = scanner.scan(chunk, [&](const MessageEvent& event) {
      check(event.length >= 4 && event.length <= kMaxMessage);
      check(!event.complete() || event.end <= chunk.size());
      seen.push_back({event.type, event.length, event.first_byte});
      return true;
    });
    check(result.consumed <= chunk.size());
    if (result.status != ScanStatus::ok) {
      // Sticky: the stream has lost its framing; a rescan consumes nothing.
      const ScanResult again = scanner.scan(chunk, [](const MessageEvent&) { return true; });
      check(again.status == result.status && again.consumed == 0);
      return result.status;
    }
    check(result.consumed == chunk.size());
  }
  return ScanStatus::ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Bytes stream(data + 1, size - 1);

  // Whatever the length field says, the parser must check it against the span.
  (void)sluice::protocol::parse_startup_packet(stream);

  // As the client session does: delimit the startup packet, parse it, and read
  // what follows as regular messages.
  const auto length =
      sluice::protocol::startup_packet_length(stream, sluice::protocol::kDefaultMaxStartupPacket);
  if (length && length->has_value() && **length <= stream.size()) {
    const auto packet = sluice::protocol::parse_startup_packet(stream.first(**length));
    if (packet && packet->kind == sluice::protocol::StartupKind::startup) {
      check(packet->protocol_version >> 16 == 3);
    }
    stream = stream.subspan(**length);
  }

  // Message boundaries must not depend on how the stream was cut into reads.
  const std::size_t split = stream.empty() ? 0 : data[0] % (stream.size() + 1);
  std::vector<Seen> whole;
  std::vector<Seen> pieces;
  const ScanStatus whole_status = scan_stream({stream}, whole);
  const ScanStatus pieces_status = scan_stream({stream.first(split), stream.subspan(split)}, pieces);
  check(whole_status == pieces_status);
  check(whole == pieces);
  return 0;
}
