// The ReplyLedger puts a server's replies into the order and shape a client
// expects when sluiced has added, answered or refused requests on its behalf.
// Every scenario is fed whole, split in two at every offset, and byte by byte:
// the client must see the same bytes however the server's stream is cut.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pool/reply_ledger.h"
#include "protocol/backend_messages.h"
#include "protocol/extended_query.h"
#include "tests/unit/backend_stream.h"

namespace sluice::pool {
namespace {

const std::string kNoData = message('n');
const std::string kNotice = message('N', std::string("SNOTICE\0\0", 9));

std::string ready(char status) { return message('Z', std::string(1, status)); }

std::string error(const std::string& sqlstate) {
  std::string out;
  protocol::append_error_response(out, protocol::Severity::error, sqlstate, "boom");
  return out;
}

// The client's own requests, one per type letter.
void forwarded(ReplyLedger& ledger, std::string_view requests) {
  for (const char request : requests) ledger.expect_forwarded(request);
}

struct Scenario {
  std::function<void(ReplyLedger&, ServerStatementCache&)> expect;  // requests, in order
  std::string server;                                               // the server's replies
  std::string client;                                               // what the client must see
};

// Feeds `server` to the ledger in pieces cut at `cuts`; returns what it let through.
std::string feed(ReplyLedger& ledger, const std::string& server, const std::vector<std::size_t>& cuts) {
  std::string seen;
  feed_in_pieces(ledger, server, cuts, [&](const std::string& out) { seen += out; });
  return seen;
}

// The scenario fed in the given pieces; returns ready replies first, then everything filtered.
std::string run(const Scenario& scenario, const std::vector<std::size_t>& cuts,
                ServerStatementCache* cache_out = nullptr) {
  ServerStatementCache cache(8);
  ReplyLedger ledger(cache);
  scenario.expect(ledger, cache);
  std::string seen = ledger.take_ready();
  seen += feed(ledger, scenario.server, cuts);
  EXPECT_TRUE(ledger.empty());
  if (cache_out != nullptr) *cache_out = cache;
  return seen;
}

void expect_every_split(const Scenario& scenario) {
  EXPECT_EQ(run(scenario, {}), scenario.client) << "whole";
  for (std::size_t cut = 1; cut < scenario.server.size(); ++cut) {
    ASSERT_EQ(run(scenario, {cut}), scenario.client) << "split at " << cut;
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < scenario.server.size(); ++cut) every_byte.push_back(cut);
  EXPECT_EQ(run(scenario, every_byte), scenario.client) << "byte by byte";
}

StatementPtr statement(const std::string& name) {
  return std::make_shared<const PreparedStatement>(PreparedStatement{name, "SELECT 1\0\0\0"});
}

TEST(ReplyLedgerTest, ForwardedRepliesPassUnchanged) {
  const std::string stream = kParseComplete + kBindComplete + kNoData + kRow + kSelectDone + kNotice +
                             ready('I') + kRow + kSelectDone + ready('I');
  expect_every_split(
      {[](ReplyLedger& ledger, ServerStatementCache&) { forwarded(ledger, "PBDESQ"); }, stream, stream});
}

TEST(ReplyLedgerTest, InjectedParseAndCloseRepliesAreDropped) {
  const auto kept = statement("sluice_1");
  const auto evicted = statement("sluice_2");
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache&) {
                        ledger.expect(pending_reply(PendingKind::injected_close, 'C', evicted));
                        ledger.expect(pending_reply(PendingKind::injected_parse, 'P', kept));
                        forwarded(ledger, "BES");
                      },
                      kCloseComplete + kParseComplete + kBindComplete + kRow + kSelectDone + ready('I'),
                      kBindComplete + kRow + kSelectDone + ready('I')});
}

TEST(ReplyLedgerTest, AnsweredParseGoesWherePostgresWouldHavePutIt) {
  // Bind/Execute of one statement, then a Parse sluiced answers, then its Bind/Execute.
  std::string answer;
  protocol::append_parse_complete(answer);
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache&) {
                        forwarded(ledger, "BE");
                        ledger.expect(pending_reply(PendingKind::answered, 'P', {}, answer));
                        forwarded(ledger, "BES");
                      },
                      kBindComplete + kRow + kSelectDone + kBindComplete + kRow + kSelectDone + ready('T'),
                      kBindComplete + kRow + kSelectDone + kParseComplete + kBindComplete + kRow +
                          kSelectDone + ready('T')});
}

TEST(ReplyLedgerTest, AnswerWithNothingOwedIsReadyAtOnce) {
  std::string answer;
  protocol::append_close_complete(answer);
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache&) {
                        ledger.expect(pending_reply(PendingKind::answered, 'C', {}, answer));
                        ledger.expect_forwarded('S');
                      },
                      ready('I'), kCloseComplete + ready('I')});
}

TEST(ReplyLedgerTest, AnswersAfterTheLastReplyFollowIt) {
  std::string answer;
  protocol::append_parse_complete(answer);
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache&) {
                        forwarded(ledger, "BE");
                        ledger.expect(pending_reply(PendingKind::answered, 'P', {}, answer));
                        ledger.expect_forwarded('H');  // Flush: owes nothing
                      },
                      kBindComplete + kRow + kSelectDone,
                      kBindComplete + kRow + kSelectDone + kParseComplete});
}

TEST(ReplyLedgerTest, AnErrorSkipsToSyncLikePostgres) {
  // The Bind fails: the answered Parse after it is never answered, the
  // injected Parse never ran, and the next batch is untouched.
  std::string answer;
  protocol::append_parse_complete(answer);
  const auto later = statement("sluice_3");
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache& cache) {
                        ledger.expect_forwarded('B');
                        ledger.expect(pending_reply(PendingKind::answered, 'P', {}, answer));
                        cache.add(later);
                        ledger.expect(pending_reply(PendingKind::injected_parse, 'P', later));
                        forwarded(ledger, "ESQ");
                      },
                      error("22012") + ready('I') + kRow + kSelectDone + ready('I'),
                      error("22012") + ready('I') + kRow + kSelectDone + ready('I')});
}

// query_timeout_ms: the cancel's error reaches the client in words that name sluiced's timeout,
// whether the ledger tracks the client's requests or only filters from the timeout on; counted as an
// error the ledger made. Another error passes as it is.
TEST(ReplyLedgerTest, AQueryTimeoutsCancelIsReworded) {
  std::string reworded;
  protocol::append_error_response(reworded, protocol::Severity::error, "57014", "cancelled by the timeout",
                                  "why");
  for (const bool tracked : {true, false}) {
    expect_every_split({[tracked](ReplyLedger& ledger, ServerStatementCache&) {
                          if (tracked) forwarded(ledger, "Q");
                          ledger.reword_next_cancel("cancelled by the timeout", "why");
                        },
                        kRow + error("57014") + ready('I'), kRow + reworded + ready('I')});
  }
  expect_every_split({[](ReplyLedger& ledger, ServerStatementCache&) {
                        forwarded(ledger, "Q");
                        ledger.reword_next_cancel("cancelled by the timeout", "why");
                      },
                      error("22012") + ready('I'), error("22012") + ready('I')});
  // The Execute of a tracked statement: its error is held as a possible stale plan, then reworded.
  expect_every_split({[](ReplyLedger& ledger, ServerStatementCache& cache) {
                        const auto running = statement("sluice_9");
                        cache.add(running);
                        ledger.expect_bind(running);
                        forwarded(ledger, "ES");
                        ledger.reword_next_cancel("cancelled by the timeout", "why");
                      },
                      kBindComplete + kRow + error("57014") + ready('I'),
                      kBindComplete + kRow + reworded + ready('I')});
  ServerStatementCache cache(8);
  ReplyLedger ledger(cache);
  ledger.reword_next_cancel("cancelled by the timeout", "why");
  EXPECT_EQ(feed(ledger, error("57014") + ready('I') + error("57014"), {7}),
            reworded + ready('I') + error("57014"));  // once
  EXPECT_EQ(ledger.take_made_errors(), std::vector<std::string>{"57014"});
  // A cancel that came too late cancelled nothing: forgotten, a later 57014 keeps its words.
  ledger.reword_next_cancel("cancelled by the timeout", "why");
  ledger.forget_rewording();
  EXPECT_EQ(feed(ledger, error("57014"), {}), error("57014"));
}

TEST(ReplyLedgerTest, SkippedInjectedParseLeavesTheCache) {
  const auto lost = statement("sluice_4");
  ServerStatementCache cache(8);
  run({[&](ReplyLedger& ledger, ServerStatementCache& inner) {
         ledger.expect_forwarded('B');
         inner.add(lost);
         ledger.expect(pending_reply(PendingKind::injected_parse, 'P', lost));
         forwarded(ledger, "BS");
       },
       error("22012") + ready('I'),
       {}},
      {}, &cache);
  EXPECT_FALSE(cache.touch(*lost));
}

TEST(ReplyLedgerTest, RefusedRequestsErrorIsReplaced) {
  const std::string replacement = error("26000");
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache&) {
                        ledger.expect(pending_reply(PendingKind::refused, 'B', {}, replacement));
                        forwarded(ledger, "ES");
                      },
                      error("42P01") + ready('T'), replacement + ready('T')});
}

TEST(ReplyLedgerTest, RefusedQueryIsReplacedOnceAndEndsWithItsReadyForQuery) {
  const std::string replacement = error("0A000");
  expect_every_split({[&](ReplyLedger& ledger, ServerStatementCache&) {
                        ledger.expect(pending_reply(PendingKind::refused, 'Q', {}, replacement));
                        ledger.expect_forwarded('Q');
                      },
                      kNotice + error("42601") + ready('E') + error("25P02") + ready('E'),
                      kNotice + replacement + ready('E') + error("25P02") + ready('E')});
}

TEST(ReplyLedgerTest, ErrorBeforeTheClientsSyncSkipsWhatItSendsNext) {
  // The error arrives before the client has sent the rest of its batch.
  ServerStatementCache cache(8);
  ReplyLedger ledger(cache);
  ledger.expect_forwarded('B');
  const std::string stream = error("22012");
  protocol::MessageScanner scanner(1 << 20);
  ledger.begin_chunk(protocol::as_bytes(stream));
  scanner.scan(protocol::as_bytes(stream), [&](const protocol::MessageEvent& event) {
    ledger.on_message(event);
    return true;
  });
  ledger.finish_chunk(0);
  std::string answer;
  protocol::append_parse_complete(answer);
  ledger.expect(
      pending_reply(PendingKind::answered, 'P', {}, answer));  // skipped by the server: never answered
  ledger.expect_forwarded('E');
  EXPECT_TRUE(ledger.empty());
  EXPECT_EQ(ledger.take_ready(), "");
  ledger.expect_forwarded('S');
  EXPECT_FALSE(ledger.empty());
}

TEST(ReplyLedgerTest, AbandonStartsANewGenerationWhenStatementsWereInFlight) {
  ServerStatementCache cache(8);
  ReplyLedger ledger(cache);
  const auto pending = statement("sluice_5");
  cache.add(pending);
  ledger.expect(pending_reply(PendingKind::injected_parse, 'P', pending));
  ledger.abandon();
  EXPECT_TRUE(ledger.empty());
  EXPECT_EQ(cache.size(), 0U);
  EXPECT_EQ(cache.suffix(), "_g1");
}

}  // namespace
}  // namespace sluice::pool

namespace sluice::pool {
namespace {

const std::string kBeginDone = message('C', std::string("BEGIN\0", 6));
const std::string kCommitDone = message('C', std::string("COMMIT\0", 7));
const std::string kRowDescription = message('T', std::string("\0\0", 2));
const std::string kEncoding = message('S', std::string("client_encoding\0LATIN1\0", 23));

TEST(ReplyLedgerTest, OwnQueryRepliesAreNotShown) {
  const std::string restore =
      kBeginDone + kRowDescription + kRow + kSelectDone + kEncoding + kNotice + kCommitDone + ready('I');
  expect_every_split({[](ReplyLedger& ledger, ServerStatementCache&) {
                        ledger.expect(pending_reply(PendingKind::own_query, 'Q'));
                        forwarded(ledger, "Q");
                      },
                      restore + kRow + kSelectDone + ready('I'), kRow + kSelectDone + ready('I')});
}

// A client that left after an error, before its Sync, leaves no skip behind: the next client's
// own query (its settings' restore) is answered to sluiced, not shown to that client.
TEST(ReplyLedgerTest, AnAbandonedSkipDoesNotSwallowTheNextOwnQuery) {
  ServerStatementCache cache(8);
  ReplyLedger ledger(cache);
  forwarded(ledger, "P");
  EXPECT_EQ(feed(ledger, error("42601"), {}), error("42601"));
  ledger.abandon();
  ledger.expect(pending_reply(PendingKind::own_query, 'Q'));
  const std::string replies = kRowDescription + kRow + kSelectDone + ready('I');
  EXPECT_EQ(feed(ledger, replies, {}), "");
  EXPECT_EQ(ledger.take_own_replies(), replies);
}

// The replies are gathered whole for the client session to read, however the stream is cut; a
// notification for a listening client passes.
TEST(ReplyLedgerTest, OwnQueryRepliesAreGatheredWholeButNotificationsPass) {
  const std::string notification = message('A', std::string("\0\0\0\x07news\0hello\0", 15));
  const std::string replies = kRowDescription + kRow + kSelectDone + error("42501");
  const std::string stream = replies + notification + ready('I');
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    ServerStatementCache cache(8);
    ReplyLedger ledger(cache);
    ledger.expect(pending_reply(PendingKind::own_query, 'Q'));
    EXPECT_EQ(feed(ledger, stream, {cut}), notification) << "split at " << cut;
    EXPECT_EQ(ledger.take_own_replies(), replies + ready('I')) << "split at " << cut;
    EXPECT_TRUE(ledger.empty());
    EXPECT_FALSE(ledger.take_own_replies());
  }
}

}  // namespace
}  // namespace sluice::pool
