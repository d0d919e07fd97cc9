// Session state: in session mode a client keeps its server, and its SETs, from login to logout,
// and the next client gets the server back reset (DISCARD ALL). In transaction mode session state
// belongs to the server, not the client: what happens is documented here, not promised.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <string>

#include "tests/integration/harness.h"

namespace harness {
namespace {

TEST(PoolerSessionTest, SetSurvivesBetweenTransactionsInSessionMode) {
  Sluiced sluiced({.pool_size = 1, .pool_mode = "session"});
  const PgConn conn = connect(sluiced.conninfo());
  const std::string pid = scalar(conn, "SELECT pg_backend_pid()");

  exec_ok(conn, "SET application_name = 'pooler-session-a'");
  exec_ok(conn, "SET search_path = pooler_session_schema, public");
  // libpq learnt of the change from the ParameterStatus the server sent through sluiced.
  EXPECT_STREQ(PQparameterStatus(conn.get(), "application_name"), "pooler-session-a");

  for (int i = 0; i < 3; ++i) {
    exec_ok(conn, "BEGIN");
    EXPECT_EQ(scalar(conn, "SHOW application_name"), "pooler-session-a");
    EXPECT_EQ(scalar(conn, "SHOW search_path"), "pooler_session_schema, public");
    exec_ok(conn, "COMMIT");
    EXPECT_EQ(scalar(conn, "SELECT current_setting('application_name')"), "pooler-session-a");
    EXPECT_EQ(scalar(conn, "SELECT pg_backend_pid()"), pid);
  }

  // Other session state lives as long: a prepared statement and a temporary table.
  exec_ok(conn, "PREPARE pooler_session_stmt AS SELECT 40 + 2");
  exec_ok(conn, "CREATE TEMP TABLE pooler_session_temp (n int)");
  exec_ok(conn, "INSERT INTO pooler_session_temp VALUES (1)");
  EXPECT_EQ(scalar(conn, "EXECUTE pooler_session_stmt"), "42");
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM pooler_session_temp"), "1");

  // The application_name is visible to PostgreSQL itself, on this client's backend.
  const PgConn direct = connect(postgres().conninfo());
  EXPECT_EQ(scalar(direct, "SELECT application_name FROM pg_stat_activity WHERE pid = " + pid),
            "pooler-session-a");
}

TEST(PoolerSessionTest, NextClientGetsTheSameServerReset) {
  Sluiced sluiced({.pool_size = 1, .pool_mode = "session"});
  std::string first_pid;
  std::string default_application_name;
  {
    const PgConn first = connect(sluiced.conninfo());
    first_pid = scalar(first, "SELECT pg_backend_pid()");
    default_application_name = scalar(first, "SHOW application_name");
    exec_ok(first, "SET application_name = 'pooler-session-leak'");
    exec_ok(first, "SET search_path = pooler_session_leak");
    exec_ok(first, "SET statement_timeout = '12345ms'");
    exec_ok(first, "PREPARE pooler_session_leak AS SELECT 1");
    exec_ok(first, "CREATE TEMP TABLE pooler_session_leak (n int)");
    exec_ok(first, "LISTEN pooler_session_leak");
    ASSERT_EQ(scalar(first, "SHOW application_name"), "pooler-session-leak");
  }  // the first client logs out: the server is reset and goes back to the pool

  const PgConn second = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(second, "SELECT pg_backend_pid()"), first_pid) << "pool_size 1: the same server, reused";
  EXPECT_EQ(scalar(second, "SHOW application_name"), default_application_name);
  EXPECT_EQ(scalar(second, "SHOW search_path"), "\"$user\", public");
  EXPECT_EQ(scalar(second, "SHOW statement_timeout"), "0");
  EXPECT_EQ(scalar(second, "SELECT count(*) FROM pg_prepared_statements"), "0");
  EXPECT_EQ(scalar(second, "SELECT count(*) FROM pg_class WHERE relname = 'pooler_session_leak'"), "0");
  EXPECT_EQ(scalar(second, "SELECT count(*) FROM pg_listening_channels()"), "0");
  EXPECT_EQ(PQtransactionStatus(second.get()), PQTRANS_IDLE);
}

TEST(PoolerSessionTest, SessionModeClientsWaitForTheirOwnServer) {
  // pool_size 1 in session mode: the server is the first client's until it leaves.
  Sluiced sluiced({.pool_size = 1, .pool_mode = "session"});
  PgConn first = connect(sluiced.conninfo());
  exec_ok(first, "SET application_name = 'pooler-session-owner'");

  PgConn second(PQconnectStart(sluiced.conninfo().c_str()));
  ASSERT_TRUE(second);
  ASSERT_NE(PQstatus(second.get()), CONNECTION_BAD) << PQerrorMessage(second.get());
  // Drive the non-blocking login; it cannot finish while the only server is the first client's.
  const auto poll_login = [&] {
    const PostgresPollingStatusType status = PQconnectPoll(second.get());
    return status == PGRES_POLLING_OK || status == PGRES_POLLING_FAILED;
  };
  EXPECT_FALSE(wait_until(poll_login, std::chrono::milliseconds(300)))
      << "a second session-mode client logged in while pool_size 1 was taken: "
      << PQerrorMessage(second.get());

  // The first client still runs queries on its own server meanwhile.
  EXPECT_EQ(scalar(first, "SHOW application_name"), "pooler-session-owner");
  first.reset();

  ASSERT_TRUE(wait_until(poll_login, std::chrono::seconds(10)));
  ASSERT_EQ(PQstatus(second.get()), CONNECTION_OK) << PQerrorMessage(second.get());
  EXPECT_NE(scalar(second, "SHOW application_name"), "pooler-session-owner");
}

// Transaction mode: a plain SET changes the server the client happens to hold; the next
// transaction may run on another server, or this server may go to another client first. Nothing
// here asserts that a SET persists (or that it does not); it asserts what is guaranteed and
// records what was observed.
TEST(PoolerSessionTest, TransactionModeSetIsNotPromisedToPersist) {
  Sluiced sluiced({.pool_size = 1, .pool_mode = "transaction"});
  const PgConn a = connect(sluiced.conninfo());
  const PgConn b = connect(sluiced.conninfo());

  // Guaranteed: the SET itself succeeds, and inside one transaction it is seen.
  exec_ok(a, "BEGIN");
  exec_ok(a, "SET LOCAL application_name = 'pooler-tx-local'");
  EXPECT_EQ(scalar(a, "SHOW application_name"), "pooler-tx-local");
  exec_ok(a, "COMMIT");
  // Guaranteed: SET LOCAL ends with its transaction, whichever server comes next.
  EXPECT_NE(scalar(a, "SHOW application_name"), "pooler-tx-local");
  EXPECT_NE(scalar(b, "SHOW application_name"), "pooler-tx-local");

  exec_ok(a, "SET application_name = 'pooler-tx-session-set'");
  const std::string a_sees = scalar(a, "SHOW application_name");
  const std::string b_sees = scalar(b, "SHOW application_name");
  // Documented, not asserted: with pool_size 1 and no reset between transactions, both clients
  // are expected to see 'pooler-tx-session-set' (the SET stays with the server, which B borrows).
  RecordProperty("transaction_mode_set_seen_by_setter", a_sees);
  RecordProperty("transaction_mode_set_seen_by_other_client", b_sees);
  std::cout << "transaction mode, pool_size 1: after A's SET, A sees '" << a_sees << "', B sees '" << b_sees
            << "'\n";

  // Both connections remain fully usable whatever the session state.
  EXPECT_EQ(scalar(a, "SELECT 'a ok'"), "a ok");
  EXPECT_EQ(scalar(b, "SELECT 'b ok'"), "b ok");
  exec_ok(a, "RESET application_name");
}

}  // namespace
}  // namespace harness
