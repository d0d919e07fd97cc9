// COPY through sluiced: FROM STDIN and TO STDOUT in volume, and failures in either direction that
// must leave the client's connection (and the pooled server) usable.
#include <gtest/gtest.h>

#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/test_tables.h"

namespace harness {
namespace {

std::string sqlstate(const PGresult* result) {
  const char* code = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return code != nullptr ? code : "";
}

// Sends `data` in pieces of `piece` bytes, so that rows straddle CopyData messages.
void put_copy_data(const PgConn& conn, const std::string& data, std::size_t piece) {
  for (std::size_t at = 0; at < data.size(); at += piece) {
    const std::string chunk = data.substr(at, piece);
    ASSERT_EQ(PQputCopyData(conn.get(), chunk.data(), static_cast<int>(chunk.size())), 1)
        << PQerrorMessage(conn.get());
  }
}

TEST(PoolerCopyTest, CopyFromStdinLoadsEveryRow) {
  const Table table("pooler_copy_in", "id int PRIMARY KEY, label text");
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  constexpr int kRows = 20000;
  std::string data;
  for (int id = 1; id <= kRows; ++id) data += std::to_string(id) + "\trow " + std::to_string(id) + "\n";

  const PgResult start = exec(conn, "COPY " + table.name() + " (id, label) FROM STDIN");
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN) << PQresultErrorMessage(start.get());
  ASSERT_NO_FATAL_FAILURE(put_copy_data(conn, data, 1000));
  ASSERT_EQ(PQputCopyEnd(conn.get(), nullptr), 1) << PQerrorMessage(conn.get());
  const PgResult done(PQgetResult(conn.get()));
  ASSERT_EQ(PQresultStatus(done.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(done.get());
  EXPECT_STREQ(PQcmdTuples(done.get()), std::to_string(kRows).c_str());
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);

  // Checked directly in PostgreSQL.
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name()), std::to_string(kRows));
  EXPECT_EQ(scalar(table.direct(), "SELECT sum(id) FROM " + table.name()),
            std::to_string(static_cast<long long>(kRows) * (kRows + 1) / 2));
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name() + " WHERE label <> 'row ' || id"),
            "0");

  // The connection (and pool_size 1's only server) goes on.
  EXPECT_EQ(scalar(conn, "SELECT max(id) FROM " + table.name()), std::to_string(kRows));
}

// Clients copying at once through two servers that stop reading now and then (a trigger sleeps):
// sends to a server back up, its client is held back until they drain, and the servers' writes
// share the loop turn's batch with the others' (net/send_batch.h). Every row of every client
// arrives, once.
TEST(PoolerCopyTest, ConcurrentCopiesThroughTwoServersLoadEveryRow) {
  const Table table("pooler_copy_concurrent", "client int, n int, padding text, PRIMARY KEY (client, n)");
  exec_ok(table.direct(),
          "CREATE OR REPLACE FUNCTION pooler_copy_pause() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
          "IF NEW.n % 2000 = 0 THEN PERFORM pg_sleep(0.01); END IF; RETURN NEW; END $$");
  exec_ok(table.direct(), "CREATE TRIGGER pause BEFORE INSERT ON " + table.name() +
                              " FOR EACH ROW EXECUTE FUNCTION pooler_copy_pause()");
  Sluiced sluiced({.pool_size = 2});
  constexpr int kClients = 8;
  constexpr int kRows = 10000;
  const std::string padding(100, 'p');

  std::vector<std::string> failures(kClients);
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int client = 0; client < kClients; ++client) {
    clients.emplace_back([&, client] {
      try {
        const PgConn conn = connect(sluiced.conninfo());
        std::string data;
        for (int n = 1; n <= kRows; ++n) {
          data += std::to_string(client) + "\t" + std::to_string(n) + "\t" + padding + "\n";
        }
        const PgResult start = exec(conn, "COPY " + table.name() + " FROM STDIN");
        if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
          failures[client] = PQresultErrorMessage(start.get());
          return;
        }
        for (std::size_t at = 0; at < data.size(); at += 1000) {
          const std::string piece = data.substr(at, 1000);
          if (PQputCopyData(conn.get(), piece.data(), static_cast<int>(piece.size())) != 1) {
            failures[client] = PQerrorMessage(conn.get());
            return;
          }
        }
        const PgResult done(PQputCopyEnd(conn.get(), nullptr) == 1 ? PQgetResult(conn.get()) : nullptr);
        if (PQresultStatus(done.get()) != PGRES_COMMAND_OK ||
            PQcmdTuples(done.get()) != std::to_string(kRows)) {
          failures[client] = std::string("COPY ended with: ") + PQerrorMessage(conn.get());
          return;
        }
        if (scalar(conn, "SELECT 'usable'") != "usable")
          failures[client] = "the connection is not usable after";
      } catch (const std::exception& e) {
        failures[client] = e.what();
      }
    });
  }
  for (std::thread& client : clients) client.join();
  for (int client = 0; client < kClients; ++client) EXPECT_EQ(failures[client], "") << "client " << client;

  // Checked directly in PostgreSQL: every client's rows, each once.
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name()), std::to_string(kClients * kRows));
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM (SELECT client FROM " + table.name() +
                                       " GROUP BY client HAVING count(*) = " + std::to_string(kRows) +
                                       " AND sum(n) = " + std::to_string(kRows * (kRows + 1) / 2) +
                                       " AND bool_and(padding = '" + padding + "')) whole_clients"),
            std::to_string(kClients));
  exec_ok(table.direct(), "DROP TRIGGER pause ON " + table.name());
  exec_ok(table.direct(), "DROP FUNCTION pooler_copy_pause()");
}

TEST(PoolerCopyTest, CopyFromStdinInsideATransaction) {
  const Table table("pooler_copy_in_tx", "id int");
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  exec_ok(conn, "BEGIN");
  const PgResult start = exec(conn, "COPY " + table.name() + " FROM STDIN");
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN) << PQresultErrorMessage(start.get());
  ASSERT_NO_FATAL_FAILURE(put_copy_data(conn, "1\n2\n3\n", 2));
  ASSERT_EQ(PQputCopyEnd(conn.get(), nullptr), 1);
  const PgResult done(PQgetResult(conn.get()));
  ASSERT_EQ(PQresultStatus(done.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(done.get());
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INTRANS);
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name()), "0");  // not yet committed
  exec_ok(conn, "COMMIT");
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name()), "3");
}

TEST(PoolerCopyTest, CopyToStdoutReturnsEveryRow) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  constexpr int kRows = 20000;
  const PgResult start = exec(conn, "COPY (SELECT g, 'value ' || g FROM generate_series(1, " +
                                        std::to_string(kRows) + ") g) TO STDOUT");
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_OUT) << PQresultErrorMessage(start.get());
  std::string received;
  int rows = 0;
  for (;;) {
    char* buffer = nullptr;
    const int n = PQgetCopyData(conn.get(), &buffer, /*async=*/0);
    if (n == -1) break;  // done
    ASSERT_GE(n, 0) << PQerrorMessage(conn.get());
    received.append(buffer, static_cast<std::size_t>(n));
    PQfreemem(buffer);
    ++rows;
  }
  const PgResult done(PQgetResult(conn.get()));
  ASSERT_EQ(PQresultStatus(done.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(done.get());
  EXPECT_STREQ(PQcmdTuples(done.get()), std::to_string(kRows).c_str());
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);

  EXPECT_EQ(rows, kRows);  // the server sends one CopyData per row
  std::string expected;
  for (int g = 1; g <= kRows; ++g) expected += std::to_string(g) + "\tvalue " + std::to_string(g) + "\n";
  EXPECT_EQ(received.size(), expected.size());
  EXPECT_TRUE(received == expected) << "the copied text differs from what the server produced";

  EXPECT_EQ(scalar(conn, "SELECT 'after copy out'"), "after copy out");
}

TEST(PoolerCopyTest, BadDataInCopyFromStdinReportsTheErrorAndKeepsTheConnection) {
  const Table table("pooler_copy_bad", "n int");
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  const PgResult start = exec(conn, "COPY " + table.name() + " FROM STDIN");
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN) << PQresultErrorMessage(start.get());
  std::string data;
  for (int n = 1; n <= 1000; ++n) data += std::to_string(n) + "\n";
  data += "not-a-number\n";
  for (int n = 1001; n <= 2000; ++n) data += std::to_string(n) + "\n";
  ASSERT_NO_FATAL_FAILURE(put_copy_data(conn, data, 512));
  ASSERT_EQ(PQputCopyEnd(conn.get(), nullptr), 1);
  const PgResult failed(PQgetResult(conn.get()));
  EXPECT_EQ(PQresultStatus(failed.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(failed.get()), "22P02");
  EXPECT_NE(std::string(PQresultErrorMessage(failed.get())).find("not-a-number"), std::string::npos)
      << PQresultErrorMessage(failed.get());
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);

  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK);
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_IDLE);
  EXPECT_EQ(scalar(conn, "SELECT 'usable'"), "usable");
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name()), "0");

  // A second client on the only server: nothing of the failed COPY is left on it.
  const PgConn other = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(other, "SELECT 'clean'"), "clean");
}

TEST(PoolerCopyTest, ClientAbortedCopyReportsTheErrorAndKeepsTheConnection) {
  const Table table("pooler_copy_abort", "n int");
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  const PgResult start = exec(conn, "COPY " + table.name() + " FROM STDIN");
  ASSERT_EQ(PQresultStatus(start.get()), PGRES_COPY_IN) << PQresultErrorMessage(start.get());
  ASSERT_NO_FATAL_FAILURE(put_copy_data(conn, "1\n2\n3\n", 6));
  // CopyFail: the server answers with an error naming the client's reason.
  ASSERT_EQ(PQputCopyEnd(conn.get(), "the client changed its mind"), 1);
  const PgResult failed(PQgetResult(conn.get()));
  EXPECT_EQ(PQresultStatus(failed.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(failed.get()), "57014");
  EXPECT_NE(std::string(PQresultErrorMessage(failed.get())).find("the client changed its mind"),
            std::string::npos)
      << PQresultErrorMessage(failed.get());
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);

  EXPECT_EQ(scalar(conn, "SELECT 'usable'"), "usable");
  EXPECT_EQ(scalar(table.direct(), "SELECT count(*) FROM " + table.name()), "0");
}

TEST(PoolerCopyTest, CopyFromUnknownTableFailsBeforeCopyMode) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());
  const PgResult failed = exec(conn, "COPY pooler_copy_no_such_table FROM STDIN");
  EXPECT_EQ(PQresultStatus(failed.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(failed.get()), "42P01");
  EXPECT_EQ(scalar(conn, "SELECT 'usable'"), "usable");
}

}  // namespace
}  // namespace harness
