// Each timeout of issue 4, with PostgreSQL-style errors: idle_transaction_timeout_ms,
// query_wait_timeout_ms, server_connect_timeout_ms, server_idle_timeout_s, server_lifetime_s
// (idle servers only, never one in use) and client_idle_timeout_s.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::exec_ok;
using harness::PgConn;
using harness::scalar;
using harness::wait_until;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kDatabase = "scope_timeout";

milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

class ScopeTimeoutTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }
  void SetUp() override {
    observer_ = scope_test::direct(kDatabase);
    exec_ok(observer_,
            "DROP TABLE IF EXISTS timeout_marker; CREATE TABLE timeout_marker (tag text NOT NULL)");
  }

  bool backend_gone(int pid) { return !scope_test::backend(observer_, pid).has_value(); }

  PgConn observer_;
};

TEST_F(ScopeTimeoutTest, IdleTransactionTimeoutRollsBackAndClosesTheClient) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 1,
       .overrides = scope_test::debug_overrides({{"pool", {{"idle_transaction_timeout_ms", 500}}}})});
  // Idle too, but between transactions: the timeout is not for it.
  const PgConn bystander = harness::connect(sluiced.conninfo(kDatabase));
  EXPECT_EQ(scalar(bystander, "SELECT 1"), "1");

  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  scope_test::Notices notices;
  notices.install(conn.get());
  exec_ok(conn, "BEGIN");
  const int pid = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  const Clock::time_point quiet_since = Clock::now();  // before the last statement: no later than sluiced's
  exec_ok(conn, "INSERT INTO timeout_marker VALUES ('abandoned idle in transaction')");

  ASSERT_TRUE(wait_until([&] { return scope_test::connection_closed(conn.get()); }, seconds(5)))
      << "the client idle in its transaction was not closed";
  const milliseconds waited = since(quiet_since);
  EXPECT_GE(waited, milliseconds(450)) << "closed before idle_transaction_timeout_ms";
  EXPECT_LT(waited, milliseconds(2500));
  EXPECT_TRUE(notices.has("25P03")) << notices.describe();
  bool worded = false;
  for (const auto& [state, message] : notices.received) {
    worded = worded || message == "terminating connection due to idle-in-transaction timeout";
  }
  EXPECT_TRUE(worded) << notices.describe();

  // Rolled back, not committed; the server was reused, not closed.
  EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM timeout_marker"), "0");
  const auto ends = scope_test::scope_ends(sluiced.log());
  bool rolled_back = false;
  for (const auto& end : ends) {
    rolled_back = rolled_back || (end.outcome == "rollback" &&
                                  end.reason.find("idle_transaction_timeout") != std::string::npos);
  }
  EXPECT_TRUE(rolled_back) << scope_test::describe(ends);
  EXPECT_EQ(scalar(bystander, "SELECT pg_backend_pid()"), std::to_string(pid));
  EXPECT_EQ(scalar(bystander, "SELECT count(*) FROM timeout_marker"), "0");
}

TEST_F(ScopeTimeoutTest, QueryWaitTimeoutFailsTheWaitingClient) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 1,
                            .overrides = scope_test::debug_overrides(
                                {{"databases", {{kDatabase, {{"query_wait_timeout_ms", 500}}}}}})});
  const PgConn holder = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(holder, "BEGIN");
  EXPECT_EQ(scalar(holder, "SELECT 1"), "1");

  const PgConn waiter = harness::connect(sluiced.conninfo(kDatabase));
  const Clock::time_point started = Clock::now();
  const harness::PgResult result = harness::exec(waiter, "SELECT 2");
  const milliseconds waited = since(started);
  EXPECT_EQ(PQresultStatus(result.get()), PGRES_FATAL_ERROR);
  // libpq returns the last result (the closed connection); the connection's message holds every
  // error of the query, the FATAL first.
  const std::string message = PQerrorMessage(waiter.get());
  EXPECT_NE(message.find("FATAL:  query_wait_timeout"), std::string::npos) << message;
  EXPECT_GE(waited, milliseconds(450)) << message;
  EXPECT_LT(waited, milliseconds(3000)) << message;

  // The holder is undisturbed, and once it is done the pool serves again.
  EXPECT_EQ(scalar(holder, "SELECT 3"), "3");
  exec_ok(holder, "COMMIT");
  const PgConn later = harness::connect(sluiced.conninfo(kDatabase));
  EXPECT_EQ(scalar(later, "SELECT 4"), "4");
}

TEST_F(ScopeTimeoutTest, ServerConnectTimeoutFailsPromptly) {
  // A loopback listener that never accepts nor answers: the TCP handshake completes in the
  // kernel, and libpq then waits for a reply that never comes.
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  socklen_t length = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &length), 0);
  const int port = ntohs(addr.sin_port);

  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 1,
                            .overrides = scope_test::debug_overrides(
                                {{"databases",
                                  {{"blackhole",
                                    {{"conninfo", "host=127.0.0.1 port=" + std::to_string(port)},
                                     {"pool_size", 1},
                                     {"server_connect_timeout_ms", 500},
                                     // Each attempt times out; the client waits out a few, then hears why.
                                     {"query_wait_timeout_ms", 1200}}}}}})});

  const Clock::time_point started = Clock::now();
  const PgConn refused = harness::try_connect(sluiced.conninfo("blackhole"));
  const milliseconds waited = since(started);
  const std::string message = PQerrorMessage(refused.get());
  EXPECT_EQ(PQstatus(refused.get()), CONNECTION_BAD);
  EXPECT_NE(message.find("server_connect_timeout"), std::string::npos) << message;
  EXPECT_GE(waited, milliseconds(450)) << message;
  EXPECT_LT(waited, milliseconds(3000)) << message;

  // Nothing else suffered: the other database still serves.
  const PgConn fine = harness::connect(sluiced.conninfo(kDatabase));
  EXPECT_EQ(scalar(fine, "SELECT 1"), "1");
  EXPECT_TRUE(sluiced.alive());
  close(listener);
}

TEST_F(ScopeTimeoutTest, ServerIdleTimeoutRetiresIdleServersOnly) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 1,
                            .overrides = scope_test::debug_overrides(
                                {{"pool", {{"server_idle_timeout_s", 1}, {"server_lifetime_s", 0}}}})});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));

  // Held in a transaction for longer than the timeout: in use, so never retired.
  exec_ok(conn, "BEGIN");
  const int held = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  std::this_thread::sleep_for(milliseconds(1600));  // nothing to await: the server must stay
  EXPECT_EQ(scalar(conn, "SELECT pg_backend_pid()"), std::to_string(held)) << "a server in use was retired";
  const Clock::time_point idle_since = Clock::now();  // before COMMIT: no later than sluiced's
  exec_ok(conn, "COMMIT");
  EXPECT_FALSE(backend_gone(held)) << "retired at once, not after 1 s idle";

  // Idle now: closed after about a second.
  ASSERT_TRUE(wait_until([&] { return backend_gone(held); }, seconds(5)))
      << "idle server not retired: " << scope_test::describe(scope_test::backend(observer_, held));
  EXPECT_GE(since(idle_since), milliseconds(800));
  EXPECT_NE(sluiced.log().find("server_idle_timeout"), std::string::npos);

  // A fresh one is opened on demand.
  const std::string fresh = scalar(conn, "SELECT pg_backend_pid()");
  EXPECT_NE(fresh, std::to_string(held));
}

TEST_F(ScopeTimeoutTest, ServerLifetimeRetiresOldServersOnceIdle) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 1,
                            .overrides = scope_test::debug_overrides(
                                {{"pool", {{"server_idle_timeout_s", 0}, {"server_lifetime_s", 1}}}})});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));

  // A long transaction, busy then idle inside it, outlives server_lifetime_s: not retired.
  exec_ok(conn, "BEGIN");
  const int pid = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  exec_ok(conn, "SELECT pg_sleep(1.2)");
  std::this_thread::sleep_for(milliseconds(400));  // idle inside the transaction; nothing to await
  EXPECT_EQ(scalar(conn, "SELECT pg_backend_pid()"), std::to_string(pid)) << "a server in use was retired";
  exec_ok(conn, "INSERT INTO timeout_marker VALUES ('committed in a long transaction')");
  exec_ok(conn, "COMMIT");
  EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM timeout_marker"), "1");

  // Idle and older than its lifetime: retired promptly.
  ASSERT_TRUE(wait_until([&] { return backend_gone(pid); }, seconds(2)))
      << "old idle server not retired: " << scope_test::describe(scope_test::backend(observer_, pid));
  EXPECT_NE(sluiced.log().find("server_lifetime"), std::string::npos);
  EXPECT_NE(scalar(conn, "SELECT pg_backend_pid()"), std::to_string(pid));
}

TEST_F(ScopeTimeoutTest, ClientIdleTimeoutClosesIdleClients) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 2,
       .overrides = scope_test::debug_overrides({{"pool", {{"client_idle_timeout_s", 1}}}})});
  const PgConn idle = harness::connect(sluiced.conninfo(kDatabase));
  scope_test::Notices notices;
  notices.install(idle.get());
  const Clock::time_point quiet_since = Clock::now();  // before the last query: no later than sluiced's
  EXPECT_EQ(scalar(idle, "SELECT 1"), "1");

  // Quiet as long, but running a query: not idle.
  const PgConn busy = harness::connect(sluiced.conninfo(kDatabase));
  ASSERT_EQ(PQsendQuery(busy.get(), "SELECT pg_sleep(1.5)"), 1);

  ASSERT_TRUE(wait_until([&] { return scope_test::connection_closed(idle.get()); }, seconds(5)))
      << "idle client not closed";
  EXPECT_GE(since(quiet_since), milliseconds(900));
  EXPECT_TRUE(notices.has("57P05")) << notices.describe();
  bool worded = false;
  for (const auto& [state, message] : notices.received) {
    worded = worded || message == "terminating connection due to idle-session timeout";
  }
  EXPECT_TRUE(worded) << notices.describe();

  PGresult* result = PQgetResult(busy.get());
  EXPECT_EQ(PQresultStatus(result), PGRES_TUPLES_OK) << PQresultErrorMessage(result);
  PQclear(result);
  while (PGresult* rest = PQgetResult(busy.get())) PQclear(rest);
  EXPECT_EQ(scalar(busy, "SELECT 1"), "1");
}

}  // namespace
