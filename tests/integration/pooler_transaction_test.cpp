// Transactions through sluiced: what commits is in PostgreSQL, what rolls back is not, errors
// inside a transaction, and transaction mode never lending a server that is inside someone
// else's transaction.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>

#include "tests/integration/harness.h"
#include "tests/integration/test_tables.h"

namespace harness {
namespace {

using std::chrono::milliseconds;

std::string sqlstate(const PgResult& result) {
  const char* code = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
  return code != nullptr ? code : "";
}

// True once the query sent with PQsendQuery has its whole reply (PQgetResult would not block).
bool reply_complete(const PgConn& conn) {
  if (PQconsumeInput(conn.get()) == 0) return true;  // the connection broke: nothing more will come
  return PQisBusy(conn.get()) == 0;
}

TEST(PoolerTransactionTest, CommittedTransactionIsVisibleInPostgres) {
  const Table table("pooler_tx_commit");
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  exec_ok(conn, "BEGIN");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INTRANS);
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (1, 'one'), (2, 'two')");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (3, 'three')");
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM " + table.name()), "3");  // its own writes
  EXPECT_EQ(table.count(), 0);                                           // nobody else's yet
  exec_ok(conn, "COMMIT");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_IDLE);

  EXPECT_EQ(table.count(), 3);
  // Also a commit in one simple-query string, and an implicit one (autocommit).
  exec_ok(conn, "BEGIN; INSERT INTO " + table.name() + " VALUES (4, 'four'); COMMIT");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (5, 'five')");
  EXPECT_EQ(table.count(), 5);
}

TEST(PoolerTransactionTest, RolledBackTransactionIsNotVisible) {
  const Table table("pooler_tx_rollback");
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  exec_ok(conn, "BEGIN");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (1, 'gone')");
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM " + table.name()), "1");
  exec_ok(conn, "ROLLBACK");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_IDLE);

  EXPECT_EQ(table.count(), 0);
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM " + table.name()), "0");

  // A savepoint rolled back inside a committed transaction.
  exec_ok(conn, "BEGIN");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (2, 'kept')");
  exec_ok(conn, "SAVEPOINT s");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (3, 'undone')");
  exec_ok(conn, "ROLLBACK TO SAVEPOINT s");
  exec_ok(conn, "COMMIT");
  EXPECT_EQ(table.count(), 1);
}

TEST(PoolerTransactionTest, ErrorInsideTransactionThenRollbackThenNewQuery) {
  const Table table("pooler_tx_error");
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  exec_ok(conn, "BEGIN");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (1, 'doomed')");
  const PgResult duplicate = exec(conn, "INSERT INTO " + table.name() + " VALUES (1, 'again')");
  EXPECT_EQ(PQresultStatus(duplicate.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(duplicate), "23505");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INERROR);

  // The server still holds the failed transaction for this client.
  const PgResult aborted = exec(conn, "SELECT 1");
  EXPECT_EQ(PQresultStatus(aborted.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(aborted), "25P02");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INERROR);

  exec_ok(conn, "ROLLBACK");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_IDLE);
  EXPECT_EQ(scalar(conn, "SELECT 'fresh'"), "fresh");
  EXPECT_EQ(scalar(conn, "SELECT txid_current_if_assigned() IS NULL"), "t");
  EXPECT_EQ(table.count(), 0);

  // The same through the extended protocol.
  exec_ok(conn, "BEGIN");
  const char* zero[] = {"0"};
  const PgResult bad(PQexecParams(conn.get(), "SELECT 1 / $1::int", 1, nullptr, zero, nullptr, nullptr, 0));
  EXPECT_EQ(sqlstate(bad), "22012");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INERROR);
  exec_ok(conn, "ROLLBACK");
  exec_ok(conn, "INSERT INTO " + table.name() + " VALUES (7, 'after')");
  EXPECT_EQ(table.count(), 1);
}

TEST(PoolerTransactionTest, NeverLendsAServerInsideAnotherClientsTransaction) {
  const Table table("pooler_tx_isolation");
  Sluiced sluiced({.pool_size = 1});
  const PgConn a = connect(sluiced.conninfo());
  const PgConn b = connect(sluiced.conninfo());

  exec_ok(a, "BEGIN");
  exec_ok(a, "INSERT INTO " + table.name() + " VALUES (1, 'from a')");
  const std::string a_pid = scalar(a, "SELECT pg_backend_pid()");
  const std::string a_txid = scalar(a, "SELECT txid_current_if_assigned()");

  // pool_size 1 and A's transaction is open: B's query has to wait for the server.
  const std::string b_query = "SELECT pg_backend_pid(), txid_current_if_assigned(), (SELECT count(*) FROM " +
                              table.name() + "), now() = statement_timestamp()";
  ASSERT_EQ(PQsendQuery(b.get(), b_query.c_str()), 1) << PQerrorMessage(b.get());
  EXPECT_FALSE(wait_until([&] { return reply_complete(b); }, milliseconds(500)))
      << "B's query completed while A's transaction held the only server";

  // A's transaction goes on undisturbed by B's waiting.
  exec_ok(a, "INSERT INTO " + table.name() + " VALUES (2, 'also from a')");
  EXPECT_EQ(scalar(a, "SELECT txid_current_if_assigned()"), a_txid);
  EXPECT_EQ(scalar(a, "SELECT pg_backend_pid()"), a_pid);
  EXPECT_FALSE(reply_complete(b));
  exec_ok(a, "COMMIT");

  ASSERT_TRUE(wait_until([&] { return reply_complete(b); }, std::chrono::seconds(10)))
      << "B's query did not complete after A committed";
  const PgResult result(PQgetResult(b.get()));
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  EXPECT_EQ(PQgetResult(b.get()), nullptr);
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 0), a_pid.c_str()) << "pool_size 1: the same server";
  EXPECT_EQ(PQgetisnull(result.get(), 0, 1), 1)
      << "B ran inside a transaction with txid " << PQgetvalue(result.get(), 0, 1);
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 2), "2") << "B sees A's committed rows";
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 3), "t") << "B's statement began its own transaction";
  EXPECT_EQ(PQtransactionStatus(b.get()), PQTRANS_IDLE);
  EXPECT_EQ(table.count(), 2);
}

TEST(PoolerTransactionTest, WaitingClientNeverSeesAnotherClientsFailedTransaction) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn a = connect(sluiced.conninfo());
  const PgConn b = connect(sluiced.conninfo());

  exec_ok(a, "BEGIN");
  const PgResult failed = exec(a, "SELECT 1 / 0");
  ASSERT_EQ(sqlstate(failed), "22012");
  ASSERT_EQ(PQtransactionStatus(a.get()), PQTRANS_INERROR);

  // A's server is in a failed transaction ('E'): still A's, so B waits rather than get 25P02.
  ASSERT_EQ(PQsendQuery(b.get(), "SELECT 'b runs'"), 1);
  EXPECT_FALSE(wait_until([&] { return reply_complete(b); }, milliseconds(300)));
  exec_ok(a, "ROLLBACK");

  ASSERT_TRUE(wait_until([&] { return reply_complete(b); }, std::chrono::seconds(10)));
  const PgResult result(PQgetResult(b.get()));
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 0), "b runs");
  EXPECT_EQ(PQgetResult(b.get()), nullptr);
}

TEST(PoolerTransactionTest, AbandonedTransactionIsNeitherCommittedNorInherited) {
  const Table table("pooler_tx_abandoned");
  Sluiced sluiced({.pool_size = 1});
  PgConn a = connect(sluiced.conninfo());
  const PgConn b = connect(sluiced.conninfo());

  exec_ok(a, "BEGIN");
  exec_ok(a, "INSERT INTO " + table.name() + " VALUES (1, 'abandoned')");
  const std::string b_query =
      "SELECT txid_current_if_assigned() IS NULL, (SELECT count(*) FROM " + table.name() + ")";
  ASSERT_EQ(PQsendQuery(b.get(), b_query.c_str()), 1) << PQerrorMessage(b.get());
  EXPECT_FALSE(wait_until([&] { return reply_complete(b); }, milliseconds(300)));
  a.reset();  // A vanishes inside its transaction (PQfinish: Terminate, then close)

  ASSERT_TRUE(wait_until([&] { return reply_complete(b); }, std::chrono::seconds(10)))
      << "B still waits after A disconnected";
  const PgResult result(PQgetResult(b.get()));
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 0), "t") << "B ran inside A's abandoned transaction";
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 1), "0") << "B sees A's uncommitted row";
  EXPECT_EQ(PQgetResult(b.get()), nullptr);
  EXPECT_EQ(table.count(), 0) << "A's abandoned write was committed";
  EXPECT_EQ(scalar(b, "SELECT 'b again'"), "b again");
}

}  // namespace
}  // namespace harness
