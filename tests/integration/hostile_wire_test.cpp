// Hostile input on the client socket (issue 6 §5): startup packets with impossible lengths,
// truncated or unterminated ones, SSLRequest followed by garbage, bogus CancelRequests, and after
// login unknown message types and impossible message lengths. After each: sluiced is alive,
// answers a normal query, and no server connection is left dirty.
//
// What PostgreSQL does, for comparison (ProcessStartupPacket): a startup length below 8 or above
// 10000 is logged ("invalid length of startup packet", COMMERROR) and the connection is closed
// without a word; a packet without its final terminator gets FATAL 08P01; a CancelRequest of the
// wrong length is closed without a word. sluiced answers the length errors with FATAL 08P01 before
// closing, which the tests accept as well as a silent close.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/scope_helpers.h"

namespace harness {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The next thing sluiced says is FATAL 08P01 (with `wording`, when given), then it closes.
void expect_protocol_violation(RawClient& raw, const std::string& wording = "") {
  const auto error = raw.read_until('E');
  ASSERT_TRUE(error) << "no ErrorResponse";
  ASSERT_EQ(error->type, 'E');
  auto fields = error_fields(*error);
  EXPECT_EQ(fields['S'], "FATAL");
  EXPECT_EQ(fields['C'], "08P01") << fields['M'];
  if (!wording.empty()) {
    EXPECT_EQ(fields['M'], wording);
  }
  EXPECT_TRUE(raw.closed_by_peer()) << "still open after " << fields['M'];
}

// FATAL 08P01 then close, or (as PostgreSQL does) a close without a word.
void expect_refused_or_closed(RawClient& raw) {
  const auto reply = raw.read_message();
  if (reply) {
    EXPECT_EQ(reply->type, 'E');
    auto fields = error_fields(*reply);
    EXPECT_EQ(fields['C'], "08P01") << fields['M'];
  }
  EXPECT_TRUE(raw.closed_by_peer());
}

// Alive, answers a normal query on a server that is not inside someone else's transaction
// (pool_size 1 makes that the only server), and no backend is left busy or in a transaction.
void expect_healthy(Sluiced& sluiced) {
  ASSERT_TRUE(sluiced.alive()) << "sluiced died";
  const PgConn conn = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(conn, "SELECT now() = statement_timestamp()"), "t")
      << "the pooled server was inside a transaction";
  EXPECT_EQ(scalar(conn, "SELECT 'still ok'"), "still ok");
  std::string dirty;
  EXPECT_TRUE(wait_until([&] { return (dirty = dirty_backends()).empty(); }, seconds(5)))
      << "backends left dirty:\n"
      << dirty;
}

// ---- startup packets ----

TEST(HostileStartupTest, ImpossibleLengthsAreRefused) {
  Sluiced sluiced({.pool_size = 1});
  for (const std::uint32_t length : {0U, 3U, 0x7fffffffU, 0xffffffffU}) {
    SCOPED_TRACE("startup length " + std::to_string(length));
    RawClient raw(sluiced.socket_path());
    raw.try_send(be32(length) + be32(196608) + "user");
    expect_refused_or_closed(raw);
  }
  // Just over the limit (PostgreSQL's 10000), with the bytes really sent.
  {
    RawClient raw(sluiced.socket_path());
    raw.try_send(be32(10001) + be32(196608) + std::string(10001 - 8, 'x'));
    expect_refused_or_closed(raw);
  }
  expect_healthy(sluiced);
}

TEST(HostileStartupTest, TruncatedPacketsAreDropped) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"limits", {{"login_timeout_ms", 500}}}}});
  const std::string packet = startup_packet();
  // The client closes after 1, 3, 4, 9 bytes and one short of the whole packet: dropped quietly.
  for (const std::size_t cut :
       {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{9}, packet.size() - 1}) {
    SCOPED_TRACE("closed after " + std::to_string(cut) + " bytes");
    RawClient raw(sluiced.socket_path());
    raw.try_send(packet.substr(0, cut));
    raw.shutdown_write();
    EXPECT_TRUE(raw.closed_by_peer());
  }
  // The client sends part of a packet and falls silent: refused at the login timeout.
  {
    RawClient raw(sluiced.socket_path());
    raw.try_send(packet.substr(0, 9));
    const auto start = Clock::now();
    expect_protocol_violation(raw);
    EXPECT_LT(Clock::now() - start, seconds(4));
  }
  expect_healthy(sluiced);
}

TEST(HostileStartupTest, UnterminatedPacketsAreProtocolViolations) {
  Sluiced sluiced({.pool_size = 1});
  const std::string user = os_user();
  // PostgreSQL's wording, sent by PostgreSQL too (FATAL 08P01).
  const std::string wording = "invalid startup packet layout: expected terminator as last byte";
  const std::vector<std::string> bodies = {
      "user" + std::string(1, '\0') + user + '\0',  // the list lacks its final terminator
      "user" + std::string(1, '\0') + user,         // so does the last value
      "user",                                       // a name without its NUL
      std::string("user\0", 5),                     // a name without a value
  };
  for (const std::string& parameters : bodies) {
    SCOPED_TRACE("parameters of " + std::to_string(parameters.size()) + " bytes");
    RawClient raw(sluiced.socket_path());
    const std::string body = be32(196608) + parameters;
    raw.try_send(be32(static_cast<std::uint32_t>(body.size() + 4)) + body);
    expect_protocol_violation(raw, wording);
  }
  expect_healthy(sluiced);
}

TEST(HostileStartupTest, SslRequestFollowedByGarbage) {
  Sluiced sluiced({.pool_size = 1});
  const std::string ssl_request = be32(8) + be32(80877103);
  const std::string client_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);  // a TLS ClientHello
  {
    // In the same packet: data the client should not have sent before reading 'N'. As PostgreSQL:
    // the 'N', then the refusal.
    RawClient raw(sluiced.socket_path());
    raw.try_send(ssl_request + client_hello);
    EXPECT_EQ(raw.read_bytes(1), std::optional<std::string>("N"));
    expect_protocol_violation(raw, "received unencrypted data after SSL request");
  }
  {
    // After 'N' the client starts TLS anyway: its record header reads as a startup length of ~369 MB.
    RawClient raw(sluiced.socket_path());
    raw.try_send(ssl_request);
    EXPECT_EQ(raw.read_bytes(1), std::optional<std::string>("N"));
    raw.try_send(client_hello);
    expect_refused_or_closed(raw);
  }
  expect_healthy(sluiced);
}

TEST(HostileStartupTest, BogusCancelRequestsCancelNothing) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn victim = connect(sluiced.conninfo());
  ASSERT_EQ(PQsendQuery(victim.get(), "SELECT pg_sleep(1), 'survived'"), 1);
  std::this_thread::sleep_for(milliseconds(200));  // the query is running on its server

  constexpr std::uint32_t kCancelCode = 80877102;
  {
    // Length 12: one field short of a CancelRequest.
    RawClient raw(sluiced.socket_path());
    raw.try_send(be32(12) + be32(kCancelCode) + be32(static_cast<std::uint32_t>(PQbackendPID(victim.get()))));
    expect_refused_or_closed(raw);
  }
  std::mt19937 random(6);
  // Well formed, with random keys, and with the victim's pid but a random secret: closed, no effect.
  for (const bool right_pid : {false, false, true}) {
    RawClient raw(sluiced.socket_path());
    const auto pid = right_pid ? static_cast<std::uint32_t>(PQbackendPID(victim.get())) : random();
    raw.try_send(be32(16) + be32(kCancelCode) + be32(pid) + be32(random()));
    EXPECT_FALSE(raw.read_message(milliseconds(500))) << "a CancelRequest gets no reply";
    EXPECT_TRUE(raw.closed_by_peer());
  }

  PGresult* raw_result = PQgetResult(victim.get());
  ASSERT_NE(raw_result, nullptr);
  const PgResult result(raw_result);
  EXPECT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  if (PQresultStatus(result.get()) == PGRES_TUPLES_OK) {
    EXPECT_STREQ(PQgetvalue(result.get(), 0, 1), "survived");
  }
  while (PGresult* rest = PQgetResult(victim.get())) PQclear(rest);
  expect_healthy(sluiced);
}

// ---- messages after login ----

TEST(HostileMessageTest, UnknownTypeAfterLoginIsFatal) {
  Sluiced sluiced({.pool_size = 1});
  {
    RawClient raw(sluiced.socket_path());
    ASSERT_EQ(raw.login(), "I");
    raw.try_send("\x01" + be32(4));
    expect_protocol_violation(raw, "invalid frontend message type 1");
  }
  expect_healthy(sluiced);
}

TEST(HostileMessageTest, UnknownTypeInsideATransactionLeavesNoDirtyServer) {
  Sluiced sluiced({.pool_size = 1});
  {
    RawClient raw(sluiced.socket_path());
    ASSERT_EQ(raw.login(), "I");
    raw.try_send(query_message("BEGIN"));
    const auto ready = raw.read_until('Z');
    ASSERT_TRUE(ready && ready->type == 'Z');
    EXPECT_EQ(ready->payload, "T");
    raw.try_send(query_message("CREATE TEMP TABLE hostile_leftover (x int)"));
    ASSERT_TRUE(raw.read_until('Z'));
    raw.try_send("\x01" + be32(4));
    expect_protocol_violation(raw, "invalid frontend message type 1");
  }
  expect_healthy(sluiced);
  // The rolled-back transaction took its temp table with it.
  const PgConn conn = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM pg_class WHERE relname = 'hostile_leftover'"), "0");
}

TEST(HostileMessageTest, UnknownTypeBehindARunningQuery) {
  Sluiced sluiced({.pool_size = 1});
  {
    // One send: the query goes to the server, the unknown type right behind it ends the client.
    RawClient raw(sluiced.socket_path());
    ASSERT_EQ(raw.login(), "I");
    raw.try_send(query_message("SELECT pg_sleep(0.3)") + "\xfe" + be32(4));
    expect_protocol_violation(raw, "invalid frontend message type 254");
  }
  expect_healthy(sluiced);
}

TEST(HostileMessageTest, UnknownTypeSplitAcrossReads) {
  Sluiced sluiced({.pool_size = 1});
  {
    // The header arrives in two pieces, so its first bytes may already have gone to the server.
    RawClient raw(sluiced.socket_path());
    ASSERT_EQ(raw.login(), "I");
    raw.try_send(std::string("\x01\x00", 2));
    std::this_thread::sleep_for(milliseconds(100));
    raw.try_send(std::string("\x00\x00\x04", 3));
    expect_protocol_violation(raw, "invalid frontend message type 1");
  }
  expect_healthy(sluiced);
}

TEST(HostileMessageTest, ImpossibleMessageLengthsAreProtocolViolations) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"limits", {{"message_max", 4096}}}}});
  struct Case {
    std::string name;
    std::string bytes;
    std::string wording;
  };
  const std::vector<Case> cases = {
      {"length 0", "Q" + be32(0), "invalid message length"},
      {"length 3", "Q" + be32(3) + "abc", "invalid message length"},
      {"over message_max", "Q" + be32(4097) + std::string(100, 'x'),
       "message exceeds the configured limits.message_max"},
      {"length 2^31-1", "Q" + be32(0x7fffffff), "message exceeds the configured limits.message_max"},
      {"length 2^32-1", "P" + be32(0xffffffff), "message exceeds the configured limits.message_max"},
  };
  for (const bool in_transaction : {false, true}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(c.name + (in_transaction ? " inside a transaction" : ""));
      RawClient raw(sluiced.socket_path());
      ASSERT_EQ(raw.login(), "I");
      if (in_transaction) {
        raw.try_send(query_message("BEGIN"));
        const auto ready = raw.read_until('Z');
        ASSERT_TRUE(ready && ready->type == 'Z');
      }
      raw.try_send(c.bytes);
      expect_protocol_violation(raw, c.wording);
    }
  }
  expect_healthy(sluiced);
}

// A bad length right behind a query, in the same read: the query was scanned but never sent, and
// the stream broke inside a message. The server must be discarded, not waited on for a reply to a
// query it never got (nor taken for clean).
TEST(HostileMessageTest, BadLengthBehindAQueryInOneReadDiscardsTheServer) {
  Sluiced sluiced({.pool_size = 1, .overrides = scope_test::debug_overrides()});
  for (const std::string& broken : {"Q" + be32(0) + "x", "Q" + be32(0x7fffffff) + "xyz"}) {
    SCOPED_TRACE(broken.size());
    const std::size_t mark = sluiced.log().size();
    RawClient raw(sluiced.socket_path());
    ASSERT_EQ(raw.login(), "I");
    raw.try_send(query_message("SELECT 1") + broken);
    expect_protocol_violation(raw);
    // The scope the bad length ended (not the login's, nor a transaction's).
    std::vector<scope_test::ScopeEnd> ends;
    ASSERT_TRUE(wait_until(
        [&] {
          ends.clear();
          for (auto& end : scope_test::scope_ends(sluiced.log(), mark)) {
            if (end.reason != "transaction complete" && end.reason != "login parameters fetched")
              ends.push_back(end);
          }
          return !ends.empty();
        },
        seconds(15)))
        << "no scope end logged";
    ASSERT_EQ(ends.size(), 1U) << scope_test::describe(ends);
    EXPECT_EQ(ends[0].outcome, "discard") << scope_test::describe(ends);
    // At once: not after waiting out teardown.max_ms for the reply to a query never sent.
    EXPECT_EQ(ends[0].reason.find("teardown.max_ms"), std::string::npos) << scope_test::describe(ends);
  }
  expect_healthy(sluiced);
}

}  // namespace
}  // namespace harness
