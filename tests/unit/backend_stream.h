// Backend messages as bytes, for the tests that feed a ReplyLedger a server's stream.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pool/reply_ledger.h"
#include "protocol/message_scanner.h"
#include "protocol/wire.h"

namespace sluice::pool {

inline std::string message(char type, const std::string& body = {}) {
  std::string out(1, type);
  protocol::append_u32(out, static_cast<std::uint32_t>(body.size() + 4));
  return out + body;
}

inline const std::string kParseComplete = message('1');
inline const std::string kBindComplete = message('2');
inline const std::string kCloseComplete = message('3');
inline const std::string kRow = message('D', std::string("\0\1\0\0\0\1x", 7));
inline const std::string kSelectDone = message('C', std::string("SELECT 1\0", 9));

// Feeds `server` to `ledger` in pieces cut at `cuts`, as reads would bring it; after each piece,
// `after_piece` gets what the ledger let through.
template <class AfterPiece>
void feed_in_pieces(ReplyLedger& ledger, const std::string& server, const std::vector<std::size_t>& cuts,
                    AfterPiece after_piece) {
  protocol::MessageScanner scanner(1 << 20);
  std::size_t from = 0;
  auto piece = [&](std::size_t to) {
    const auto chunk = protocol::as_bytes(server).subspan(from, to - from);
    ledger.begin_chunk(chunk);
    scanner.scan(chunk, [&](const protocol::MessageEvent& event) {
      ledger.on_message(event);
      return true;
    });
    const auto out = ledger.finish_chunk(scanner.pending_header_bytes());
    after_piece(std::string(reinterpret_cast<const char*>(out.data()), out.size()));
    from = to;
  };
  for (const std::size_t cut : cuts) piece(cut);
  piece(server.size());
}

}  // namespace sluice::pool
