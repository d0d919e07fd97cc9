// Stale plans in the ReplyLedger: a Bind that PostgreSQL refuses because the schema changed under
// the server's copy either runs its batch again unseen (nothing of the batch has had an effect) or
// shows PostgreSQL's error and drops the copy. Every scenario is fed whole, split in two at every
// offset, and byte by byte: an error cut across reads is gathered before it is judged.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pool/reply_ledger.h"
#include "pool/statement_retry.h"
#include "protocol/backend_messages.h"
#include "protocol/extended_query.h"
#include "tests/unit/backend_stream.h"

namespace sluice::pool {
namespace {

const std::string kInsertDone = message('C', std::string("INSERT 0 1\0", 11));
const std::string kBind = message('B', std::string("\0sluice_1\0\0\0\0\0\0\0", 16));
const std::string kExecute = message('E', std::string("\0\0\0\0\0", 5));
const std::string kSync = message('S');

std::string ready(char status) { return message('Z', std::string(1, status)); }

std::string error(const char* sqlstate, const std::string& text) {
  std::string out;
  protocol::append_error_response(out, protocol::Severity::error, sqlstate, text);
  return out;
}
const std::string kStale = error("0A000", "cached plan must not change result type");
const std::string kTypeGone = error("XX000", "cache lookup failed for type 16387");

StatementPtr statement() {
  return std::make_shared<const PreparedStatement>(
      PreparedStatement{"sluice_1", std::string("SELECT 1\0\0\0", 11)});
}

struct Run {
  std::string client;  // what the client saw
  std::string replay;  // what the server was sent again
  std::size_t cached = 0;
  std::size_t stale = 0;
};

// `before`: the client's requests ahead of the Bind of `s` (which begins the recorded batch when
// `recorded`), then Execute and Sync; `server` is fed in pieces cut at `cuts`.
Run run(const std::string& before, bool recorded, const std::string& server,
        const std::vector<std::size_t>& cuts) {
  const StatementPtr s = statement();
  ServerStatementCache cache(8);
  cache.add(s);
  ReplyLedger ledger(cache);
  for (const char request : before) ledger.expect_forwarded(request);
  if (recorded) ledger.batch_replay().start(s);
  ledger.expect_bind(s);
  ledger.expect_forwarded('E');
  ledger.expect_forwarded('S');
  ledger.batch_replay().add(kBind + kExecute + kSync);
  ledger.batch_replay().complete();
  Run result;
  feed_in_pieces(ledger, server, cuts, [&](const std::string& out) {
    result.client += out;
    result.replay += ledger.take_replay();
  });
  EXPECT_TRUE(ledger.empty());
  result.cached = cache.size();
  result.stale = cache.take_stale().size();
  return result;
}

void expect_every_split(const std::string& before, bool recorded, const std::string& server,
                        const std::string& client, const std::string& replay, std::size_t stale) {
  std::vector<std::vector<std::size_t>> splits{{}};
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < server.size(); ++cut) {
    splits.push_back({cut});
    every_byte.push_back(cut);
  }
  splits.push_back(every_byte);
  for (const auto& cuts : splits) {
    const Run result = run(before, recorded, server, cuts);
    ASSERT_EQ(result.client, client) << cuts.size() << " cuts, first at " << (cuts.empty() ? 0 : cuts[0]);
    ASSERT_EQ(result.replay, replay);
    ASSERT_EQ(result.cached + result.stale, 1U) << "the copy is cached, or waits to be closed";
    ASSERT_EQ(result.stale, stale) << "a copy shown stale waits to be closed";
  }
}

std::string replay_of_batch() {
  std::string replay;
  protocol::append_target(replay, 'C', 'S', "sluice_1", {});
  protocol::append_parse(replay, "sluice_1", {}, std::string("SELECT 1\0\0\0", 11));
  return replay + kBind + kExecute + kSync;
}

TEST(StatementRetryTest, RecognisesPostgresStalePlanErrors) {
  EXPECT_TRUE(is_stale_plan_error({"ERROR", "0A000", "cached plan must not change result type"}));
  EXPECT_TRUE(is_stale_plan_error({"ERROR", "XX000", "cache lookup failed for type 16387"}));
  EXPECT_FALSE(is_stale_plan_error({"ERROR", "0A000", "SQL PREPARE is not supported"}));
  EXPECT_FALSE(is_stale_plan_error({"ERROR", "XX000", "could not open file"}));
}

TEST(StatementRetryTest, StaleBindFirstInBatchRunsAgainUnseen) {
  for (const std::string& stale : {kStale, kTypeGone}) {
    expect_every_split("", true,
                       stale + ready('I') + kCloseComplete + kParseComplete + kBindComplete + kRow +
                           kSelectDone + ready('I'),
                       kBindComplete + kRow + kSelectDone + ready('I'), replay_of_batch(), 0);
  }
}

TEST(StatementRetryTest, StaleAgainOnTheRunAgainShowsTheError) {
  expect_every_split("", true, kStale + ready('I') + kCloseComplete + kParseComplete + kStale + ready('I'),
                     kStale + ready('I'), replay_of_batch(), 1);
}

TEST(StatementRetryTest, AfterAnExecuteTheErrorShowsAndTheCopyGoes) {
  expect_every_split("PBE", true, kParseComplete + kBindComplete + kInsertDone + kStale + ready('I'),
                     kParseComplete + kBindComplete + kInsertDone + kStale + ready('I'), "", 1);
}

TEST(StatementRetryTest, InsideATransactionTheErrorShows) {
  expect_every_split("S", true, ready('T') + kStale + ready('E'), ready('T') + kStale + ready('E'), "", 1);
}

TEST(StatementRetryTest, UnrecordedBatchShowsTheError) {
  expect_every_split("", false, kStale + ready('I'), kStale + ready('I'), "", 1);
}

TEST(StatementRetryTest, OtherErrorsPassAndTheCopyStays) {
  const std::string other = error("XX000", "could not open file");
  expect_every_split("", true, other + ready('I'), other + ready('I'), "", 0);
}

}  // namespace
}  // namespace sluice::pool
