// Logging in through sluiced, and being refused cleanly: unknown database, peer authentication,
// max_client_conn, an unreachable server, query_wait_timeout, encryption requests, and startup
// packets that break the protocol. Some tests speak the wire protocol on a raw socket, to see the
// exact messages (libpq hides the SQLSTATE of a refused login).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace harness {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// ---- a pool made again ----

// A pool nobody uses any more is forgotten (its last server closed at server_idle_timeout_s); the
// next login for it, the same database, user and settings as the last login's, gets a new one.
TEST(PoolerLoginTest, ALoginAfterItsPoolWasForgottenGetsANewPool) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"pool", {{"server_idle_timeout_s", 1}}}}});
  const auto pool_count = [&] {
    return ctltest::control(sluiced.control_socket(), {{"cmd", "pools"}})["pools"].size();
  };
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 'first'"), "first");
  ASSERT_TRUE(wait_until([&] { return pool_count() == 0; }, seconds(10))) << "the unused pool stays";
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 'again'"), "again");
  EXPECT_EQ(pool_count(), 1U);
}

// ---- unknown database ----

TEST(PoolerLoginTest, UnknownDatabaseIsRefusedWithPostgresWording) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = try_connect(sluiced.conninfo("nope"));
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(conn.get())).find("database \"nope\" does not exist"),
            std::string::npos)
      << PQerrorMessage(conn.get());

  // The SQLSTATE, read off the wire.
  RawClient raw(sluiced.socket_path());
  raw.send(startup_packet({{"user", os_user()}, {"database", "nope"}}));
  const auto error = raw.read_message();
  ASSERT_TRUE(error);
  ASSERT_EQ(error->type, 'E');
  auto fields = error_fields(*error);
  EXPECT_EQ(fields['S'], "FATAL");
  EXPECT_EQ(fields['C'], "3D000");
  EXPECT_EQ(fields['M'], "database \"nope\" does not exist");
  EXPECT_TRUE(raw.closed_by_peer());

  // The daemon is unharmed: the configured database still works.
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 1"), "1");
}

// ---- peer authentication ----

TEST(PoolerLoginTest, PeerAuthenticationRefusesAnotherUser) {
  const std::string me = os_user();
  ASSERT_FALSE(me.empty());
  const std::string other = me == "postgres" ? "root" : "postgres";
  Sluiced sluiced({.pool_size = 1, .overrides = {{"auth", {{"type", "peer"}}}}});

  const PgConn refused = try_connect(sluiced.conninfo("postgres", other));
  EXPECT_EQ(PQstatus(refused.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(refused.get()))
                .find("Peer authentication failed for user \"" + other + "\""),
            std::string::npos)
      << PQerrorMessage(refused.get());

  RawClient raw(sluiced.socket_path());
  raw.send(startup_packet({{"user", other}, {"database", "postgres"}}));
  const auto error = raw.read_message();
  ASSERT_TRUE(error);
  ASSERT_EQ(error->type, 'E');
  EXPECT_EQ(error_fields(*error)['C'], "28000");
  EXPECT_TRUE(raw.closed_by_peer());
}

TEST(PoolerLoginTest, PeerAuthenticationAcceptsTheOsUser) {
  const std::string me = os_user();
  ASSERT_FALSE(me.empty());
  Sluiced sluiced({.pool_size = 1, .overrides = {{"auth", {{"type", "peer"}}}}});
  const PgConn conn = connect(sluiced.conninfo("postgres", me));
  EXPECT_EQ(scalar(conn, "SELECT current_user"), me);
  EXPECT_EQ(scalar(conn, "SELECT session_user"), me);
}

// ---- max_client_conn ----

TEST(PoolerLoginTest, MaxClientConnRefusesTheNextClient) {
  Sluiced sluiced({.pool_size = 2, .overrides = {{"limits", {{"max_client_conn", 2}}}}});
  const PgConn first = connect(sluiced.conninfo());
  PgConn second = connect(sluiced.conninfo());

  const PgConn third = try_connect(sluiced.conninfo());
  EXPECT_EQ(PQstatus(third.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(third.get())).find("sorry, too many clients already"),
            std::string::npos)
      << PQerrorMessage(third.get());

  {
    RawClient raw(sluiced.socket_path());  // refused before it says anything
    const auto error = raw.read_message();
    ASSERT_TRUE(error);
    ASSERT_EQ(error->type, 'E');
    EXPECT_EQ(error_fields(*error)['C'], "53300");
    EXPECT_TRUE(raw.closed_by_peer());
  }

  // The admitted ones are unaffected.
  EXPECT_EQ(scalar(first, "SELECT 1"), "1");
  EXPECT_EQ(scalar(second, "SELECT 2"), "2");

  // A slot freed is a slot again, once sluiced has seen the client go.
  second.reset();
  PgConn again;
  ASSERT_TRUE(wait_until([&] {
    again = try_connect(sluiced.conninfo());
    return PQstatus(again.get()) == CONNECTION_OK;
  })) << PQerrorMessage(again.get());
  EXPECT_EQ(scalar(again, "SELECT 3"), "3");
}

// ---- server unreachable ----

// A server that cannot be reached may be back in a moment (a restart): the client waits for it
// while the pool retries, up to query_wait_timeout_ms, and then hears why.
TEST(PoolerLoginTest, UnreachableServerIsReportedAtTheWaitTimeout) {
  const TempDir nowhere("sluice-nopg");  // a socket directory with no server in it
  Sluiced sluiced({.pool_size = 1,
                   .overrides = {{"databases",
                                  {{"ghost",
                                    {{"conninfo", "host=" + nowhere.path() + " port=5999"},
                                     {"pool_size", 1},
                                     {"query_wait_timeout_ms", 1000}}}}}}});

  const auto start = Clock::now();
  const PgConn conn = try_connect(sluiced.conninfo("ghost"));
  const auto took = Clock::now() - start;
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_BAD);
  const std::string message = PQerrorMessage(conn.get());
  EXPECT_NE(message.find("could not connect"), std::string::npos) << message;
  EXPECT_GE(took, milliseconds(900)) << "the client did not wait for the server";
  EXPECT_LT(took, seconds(5)) << "the refusal took " << std::chrono::duration_cast<milliseconds>(took).count()
                              << " ms";

  // Again (no cached server, no stuck waiter), and the SQLSTATE on the wire.
  RawClient raw(sluiced.socket_path());
  raw.send(startup_packet({{"user", os_user()}, {"database", "ghost"}}));
  const auto error = raw.read_until('Z');
  ASSERT_TRUE(error);
  ASSERT_EQ(error->type, 'E');
  auto fields = error_fields(*error);
  EXPECT_EQ(fields['S'], "FATAL");
  EXPECT_EQ(fields['C'].substr(0, 2), "08") << fields['C'];  // connection exception class
  EXPECT_NE(fields['M'].find("could not connect"), std::string::npos) << fields['M'];

  // The reachable database in the same daemon still works.
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 1"), "1");
}

// ---- query_wait_timeout ----

TEST(PoolerLoginTest, QueryWaitTimeoutFailsTheWaitingClient) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"pool", {{"query_wait_timeout_ms", 300}}}}});
  const PgConn holder = connect(sluiced.conninfo());
  exec_ok(holder, "BEGIN");
  exec_ok(holder, "SELECT 1");  // the only server is the holder's until it commits

  const PgConn waiter = connect(sluiced.conninfo());
  const auto start = Clock::now();
  const PgResult result = exec(waiter, "SELECT 'never'");
  const auto took = Clock::now() - start;
  EXPECT_EQ(PQresultStatus(result.get()), PGRES_FATAL_ERROR);
  const std::string message = std::string(PQresultErrorMessage(result.get())) + PQerrorMessage(waiter.get());
  EXPECT_NE(message.find("query_wait_timeout"), std::string::npos) << message;
  EXPECT_GE(took, milliseconds(250)) << "failed before the timeout";
  EXPECT_LT(took, seconds(4)) << "took " << std::chrono::duration_cast<milliseconds>(took).count() << " ms";

  // The holder is unaffected and, once it commits, newcomers are served.
  exec_ok(holder, "COMMIT");
  EXPECT_EQ(scalar(holder, "SELECT 'holder'"), "holder");
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 'newcomer'"), "newcomer");
}

// ---- encryption requests ----

TEST(PoolerLoginTest, SslRequestIsAnsweredNThenTheStartupProceeds) {
  Sluiced sluiced({.pool_size = 1});
  RawClient raw(sluiced.socket_path());
  raw.send(be32(8) + be32(80877103));  // SSLRequest
  const auto answer = raw.read_bytes(1);
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, "N");

  raw.send(startup_packet({{"user", os_user()}, {"database", "postgres"}, {"application_name", "raw"}}));
  std::vector<Message> login;
  const auto ready = raw.read_until('Z', &login);
  ASSERT_TRUE(ready);
  ASSERT_EQ(ready->type, 'Z') << error_fields(*ready)['M'];
  EXPECT_EQ(ready->payload, "I");
  ASSERT_FALSE(login.empty());
  EXPECT_EQ(login.front().type, 'R');
  EXPECT_EQ(login.front().payload, be32(0)) << "AuthenticationOk";
  int parameter_status = 0;
  int backend_key_data = 0;
  for (const Message& message : login) {
    parameter_status += message.type == 'S' ? 1 : 0;
    backend_key_data += message.type == 'K' ? 1 : 0;
  }
  EXPECT_GE(parameter_status, 1);
  EXPECT_EQ(backend_key_data, 1);

  raw.send(query_message("SELECT 40 + 2"));
  std::vector<Message> reply;
  const auto done = raw.read_until('Z', &reply);
  ASSERT_TRUE(done);
  ASSERT_EQ(done->type, 'Z') << error_fields(*done)['M'];
  ASSERT_EQ(reply.size(), 3U);  // RowDescription, DataRow, CommandComplete
  EXPECT_EQ(reply[0].type, 'T');
  EXPECT_EQ(reply[1].type, 'D');
  EXPECT_EQ(reply[1].payload, std::string("\0\1", 2) + be32(2) + "42");
  EXPECT_EQ(reply[2].type, 'C');
  EXPECT_EQ(reply[2].payload, std::string("SELECT 1\0", 9));

  raw.send("X" + be32(4));  // Terminate
  EXPECT_TRUE(raw.closed_by_peer());
}

// Bytes sent with the SSLRequest, before its answer, could be a man in the middle's (CVE-2021-23214):
// refused as PostgreSQL refuses them, compared byte for byte with PostgreSQL's own answer.
TEST(PoolerLoginTest, DataSentWithAnSslRequestIsRefusedAsPostgresRefusesIt) {
  Sluiced sluiced({.pool_size = 1});
  const auto answer_of = [](const std::string& socket) {
    RawClient raw(socket);
    raw.send(be32(8) + be32(80877103) + startup_packet({{"user", os_user()}, {"database", "postgres"}}));
    const auto n = raw.read_bytes(1);
    const auto error = raw.read_message();
    std::map<char, std::string> fields;
    if (error && error->type == 'E') fields = error_fields(*error);
    fields.erase('F');  // where in the source: PostgreSQL's own, not a client's concern
    fields.erase('L');
    fields.erase('R');
    return std::make_pair(n.value_or("none"), fields);
  };
  const auto direct = answer_of(postgres().socket_dir() + "/.s.PGSQL." + std::to_string(postgres().port()));
  const auto pooled = answer_of(sluiced.socket_path());
  EXPECT_EQ(direct.first, "N");
  EXPECT_EQ(direct.second.at('M'), "received unencrypted data after SSL request");
  EXPECT_EQ(pooled.first, direct.first);
  EXPECT_EQ(pooled.second, direct.second);
}

TEST(PoolerLoginTest, GssEncRequestIsAnsweredN) {
  Sluiced sluiced({.pool_size = 1});
  RawClient raw(sluiced.socket_path());
  raw.send(be32(8) + be32(80877104));  // GSSENCRequest
  const auto answer = raw.read_bytes(1);
  ASSERT_TRUE(answer);
  EXPECT_EQ(*answer, "N");
  raw.send(startup_packet({{"user", os_user()}, {"database", "postgres"}}));
  const auto ready = raw.read_until('Z');
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->type, 'Z') << error_fields(*ready)['M'];
}

// ---- protocol violations ----

TEST(PoolerLoginTest, StartupPacketTooShortIsAProtocolViolation) {
  Sluiced sluiced({.pool_size = 1});
  RawClient raw(sluiced.socket_path());
  raw.send(be32(3) + "abcd");  // a length below the 8 a startup packet needs
  const auto error = raw.read_message();
  ASSERT_TRUE(error) << "no ErrorResponse for a startup length of 3";
  ASSERT_EQ(error->type, 'E');
  auto fields = error_fields(*error);
  EXPECT_EQ(fields['S'], "FATAL");
  EXPECT_EQ(fields['C'], "08P01") << fields['M'];
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 1"), "1");
}

TEST(PoolerLoginTest, StartupPacketTooLongIsAProtocolViolation) {
  Sluiced sluiced({.pool_size = 1});
  RawClient raw(sluiced.socket_path());
  raw.send(be32(0x7fffffff) + be32(196608));  // PostgreSQL caps a startup packet at 10000 bytes
  const auto error = raw.read_message();
  ASSERT_TRUE(error) << "no ErrorResponse for a startup length of 2^31-1";
  ASSERT_EQ(error->type, 'E');
  auto fields = error_fields(*error);
  EXPECT_EQ(fields['C'], "08P01") << fields['M'];
  EXPECT_TRUE(raw.closed_by_peer());
}

TEST(PoolerLoginTest, StartupWithoutUserIsRefused) {
  Sluiced sluiced({.pool_size = 1});
  RawClient raw(sluiced.socket_path());
  raw.send(startup_packet({{"database", "postgres"}}));
  const auto error = raw.read_message();
  ASSERT_TRUE(error);
  ASSERT_EQ(error->type, 'E');
  auto fields = error_fields(*error);
  EXPECT_EQ(fields['C'], "28000");
  EXPECT_EQ(fields['M'], "no PostgreSQL user name specified in startup packet");
  EXPECT_TRUE(raw.closed_by_peer());
}

TEST(PoolerLoginTest, SilentClientIsDroppedAtTheLoginTimeout) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"limits", {{"login_timeout_ms", 300}}}}});
  RawClient raw(sluiced.socket_path());
  const auto start = Clock::now();
  const auto error = raw.read_message(seconds(5));  // says nothing, and waits
  const auto took = Clock::now() - start;
  ASSERT_TRUE(error) << "no ErrorResponse within 5 s for a client that never sent a startup packet";
  ASSERT_EQ(error->type, 'E');
  EXPECT_EQ(error_fields(*error)['C'], "08P01");
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_GE(took, milliseconds(250));
  EXPECT_LT(took, seconds(4));
}

}  // namespace
}  // namespace harness
