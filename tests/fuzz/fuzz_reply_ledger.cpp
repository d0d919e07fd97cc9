// libFuzzer target: the statement-tracking paths that read bytes a client or
// a server chose. The input's first byte picks a split point and its next 16
// bytes the requests the ledger is told a server owes (kinds and types); the
// rest is both a client's message (read as Parse, Bind, Describe/Close, and
// as SQL for the prepared-command lexer) and a server's reply stream, fed to
// the ReplyLedger in two chunks as a MessageScanner frames it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pool/prepared_statements.h"
#include "pool/reply_ledger.h"
#include "protocol/extended_query.h"
#include "protocol/message_scanner.h"
#include "protocol/sql_commands.h"

namespace {

using sluice::pool::PendingKind;
using sluice::protocol::Bytes;

constexpr std::size_t kRequests = 16;
constexpr char kRequestTypes[] = {'P', 'B', 'D', 'E', 'C', 'S', 'Q', 'F', 'H'};

void check(bool condition) {
  if (!condition) std::abort();
}

void read_client_message(Bytes message) {
  if (const auto parse = sluice::protocol::read_parse(message)) {
    check(parse->name.size() + parse->definition.size() < message.size());
    (void)sluice::protocol::find_sql_prepared_use(sluice::protocol::query_text(parse->definition));
  }
  (void)sluice::protocol::read_bind(message);
  (void)sluice::protocol::read_target(message);
  const std::string_view text(reinterpret_cast<const char*>(message.data()), message.size());
  const auto use = sluice::protocol::find_sql_prepared_use(text);
  check(use.keyword.empty() || (use.keyword.data() >= text.data() &&
                                use.keyword.data() + use.keyword.size() <= text.data() + text.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 + kRequests) return 0;
  const Bytes stream(data + 1 + kRequests, size - 1 - kRequests);
  read_client_message(stream);

  sluice::pool::StatementRegistry registry;
  sluice::pool::ServerStatementCache cache(2);
  sluice::pool::ReplyLedger ledger(cache);
  for (std::size_t i = 0; i < kRequests; ++i) {
    const std::uint8_t op = data[1 + i];
    const char request = kRequestTypes[op % sizeof kRequestTypes];
    const auto kind = static_cast<PendingKind>((op >> 4) % 7);  // every PendingKind
    if (kind == PendingKind::forwarded) {
      ledger.expect_forwarded(request);
      continue;
    }
    auto statement = registry.intern(std::string(1, static_cast<char>('a' + op % 3)));
    if (kind == PendingKind::injected_parse || kind == PendingKind::client_parse) (void)cache.add(statement);
    ledger.expect(
        sluice::pool::pending_reply(kind, request, std::move(statement), std::string("1\0\0\0\4", 5)));
  }
  (void)ledger.take_ready();

  sluice::protocol::MessageScanner scanner(1 << 16);
  const std::size_t split = stream.empty() ? 0 : data[0] % (stream.size() + 1);
  for (const Bytes chunk : {stream.first(split), stream.subspan(split)}) {
    ledger.begin_chunk(chunk);
    const auto result = scanner.scan(chunk, [&](const sluice::protocol::MessageEvent& event) {
      ledger.on_message(event);
      return true;
    });
    if (result.status != sluice::protocol::ScanStatus::ok) break;
    const Bytes out = ledger.finish_chunk(scanner.pending_header_bytes());
    check(out.size() <= chunk.size() + 64 * kRequests);
  }
  check(cache.size() <= 2 + kRequests);
  ledger.abandon();
  check(ledger.empty());
  return 0;
}
