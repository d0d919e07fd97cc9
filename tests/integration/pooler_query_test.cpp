// Queries through sluiced: the simple and extended protocols, large results, notices, errors and
// several queries in flight at once. Every test drives a real sluiced with libpq.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace harness {
namespace {

// Everything PQgetResult hands back until it returns NULL.
std::vector<PgResult> drain_results(const PgConn& conn) {
  std::vector<PgResult> results;
  while (PGresult* result = PQgetResult(conn.get())) results.emplace_back(result);
  return results;
}

std::string sqlstate(const PgResult& result) {
  const char* code = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
  return code != nullptr ? code : "";
}

TEST(PoolerQueryTest, SimpleQueryReturnsRowsAndNulls) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  EXPECT_EQ(scalar(conn, "SELECT 1 + 1"), "2");
  EXPECT_EQ(scalar(conn, "SELECT current_database()"), "postgres");

  const PgResult result = exec(conn, "SELECT 'a'::text AS letter, NULL::int AS nothing, 3.5::numeric AS num");
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  ASSERT_EQ(PQntuples(result.get()), 1);
  ASSERT_EQ(PQnfields(result.get()), 3);
  EXPECT_STREQ(PQfname(result.get(), 0), "letter");
  EXPECT_STREQ(PQfname(result.get(), 1), "nothing");
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 0), "a");
  EXPECT_EQ(PQgetisnull(result.get(), 0, 1), 1);
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 2), "3.5");

  // A command without rows, and an empty query.
  const PgResult command = exec(conn, "DO $$ BEGIN END $$");
  EXPECT_EQ(PQresultStatus(command.get()), PGRES_COMMAND_OK);
  EXPECT_STREQ(PQcmdStatus(command.get()), "DO");
  const PgResult empty = exec(conn, "");
  EXPECT_EQ(PQresultStatus(empty.get()), PGRES_EMPTY_QUERY);

  // The login handed the client what libpq needs from ParameterStatus.
  EXPECT_NE(PQparameterStatus(conn.get(), "server_version"), nullptr);
  EXPECT_STREQ(PQparameterStatus(conn.get(), "client_encoding"), "UTF8");
  EXPECT_GE(PQserverVersion(conn.get()), 100000);
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_IDLE);
}

TEST(PoolerQueryTest, ExtendedProtocolWithTextParameters) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  const char* values[] = {"20", "22", "pooled", nullptr};
  const PgResult result(PQexecParams(conn.get(),
                                     "SELECT $1::int + $2::int, $3::text || '!', $4::text IS NULL", 4,
                                     nullptr, values, nullptr, nullptr, /*resultFormat=*/0));
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  ASSERT_EQ(PQntuples(result.get()), 1);
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 0), "42");
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 1), "pooled!");
  EXPECT_STREQ(PQgetvalue(result.get(), 0, 2), "t");
  EXPECT_EQ(PQfformat(result.get(), 0), 0);

  // The same unnamed statement again with other values: each Parse replaces it.
  for (int i = 0; i < 20; ++i) {
    const std::string n = std::to_string(i);
    const char* one[] = {n.c_str()};
    const PgResult again(
        PQexecParams(conn.get(), "SELECT $1::int * 2", 1, nullptr, one, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(again.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(again.get());
    EXPECT_EQ(std::string(PQgetvalue(again.get(), 0, 0)), std::to_string(i * 2));
  }
}

TEST(PoolerQueryTest, ExtendedProtocolWithBinaryParametersAndResults) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  const std::uint32_t param = htonl(123456);
  const char* values[] = {reinterpret_cast<const char*>(&param)};
  const int lengths[] = {sizeof param};
  const int formats[] = {1};
  const Oid types[] = {23};  // int4
  const PgResult result(PQexecParams(conn.get(), "SELECT $1 + 1, 'bytes'::bytea", 1, types, values, lengths,
                                     formats, /*resultFormat=*/1));
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  ASSERT_EQ(PQntuples(result.get()), 1);
  EXPECT_EQ(PQfformat(result.get(), 0), 1);
  ASSERT_EQ(PQgetlength(result.get(), 0, 0), 4);
  std::uint32_t sum = 0;
  std::memcpy(&sum, PQgetvalue(result.get(), 0, 0), sizeof sum);
  EXPECT_EQ(ntohl(sum), 123457U);
  ASSERT_EQ(PQgetlength(result.get(), 0, 1), 5);
  EXPECT_EQ(std::string(PQgetvalue(result.get(), 0, 1), 5), "bytes");
}

TEST(PoolerQueryTest, UnnamedStatementPreparedAndExecutedInOnePipeline) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  // Parse, Describe, Bind/Execute on the unnamed statement, one Sync: one scope in transaction mode.
  ASSERT_EQ(PQenterPipelineMode(conn.get()), 1);
  ASSERT_EQ(PQsendPrepare(conn.get(), "", "SELECT $1::int * 3", 1, nullptr), 1);
  ASSERT_EQ(PQsendDescribePrepared(conn.get(), ""), 1);
  const char* values[] = {"14"};
  ASSERT_EQ(PQsendQueryPrepared(conn.get(), "", 1, values, nullptr, nullptr, 0), 1);
  ASSERT_EQ(PQpipelineSync(conn.get()), 1);

  const PgResult prepared(PQgetResult(conn.get()));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(prepared.get());
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);
  const PgResult described(PQgetResult(conn.get()));
  ASSERT_EQ(PQresultStatus(described.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(described.get());
  EXPECT_EQ(PQnparams(described.get()), 1);
  EXPECT_EQ(PQparamtype(described.get(), 0), 23U);
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);
  const PgResult executed(PQgetResult(conn.get()));
  ASSERT_EQ(PQresultStatus(executed.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(executed.get());
  EXPECT_STREQ(PQgetvalue(executed.get(), 0, 0), "42");
  EXPECT_EQ(PQgetResult(conn.get()), nullptr);
  const PgResult sync(PQgetResult(conn.get()));
  EXPECT_EQ(PQresultStatus(sync.get()), PGRES_PIPELINE_SYNC);
  ASSERT_EQ(PQexitPipelineMode(conn.get()), 1);

  EXPECT_EQ(scalar(conn, "SELECT 'after pipeline'"), "after pipeline");
}

TEST(PoolerQueryTest, ManyRowsAndLargeValuesArriveIntact) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  constexpr int kRows = 50000;
  const PgResult result = exec(conn, "SELECT g, md5(g::text), repeat('x', 100) FROM generate_series(1, " +
                                         std::to_string(kRows) + ") g");
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  ASSERT_EQ(PQntuples(result.get()), kRows);
  long long sum = 0;
  for (int row = 0; row < kRows; ++row) {
    sum += std::stoll(PQgetvalue(result.get(), row, 0));
    ASSERT_EQ(PQgetlength(result.get(), row, 1), 32) << "row " << row;
    ASSERT_EQ(PQgetlength(result.get(), row, 2), 100) << "row " << row;
  }
  EXPECT_EQ(sum, static_cast<long long>(kRows) * (kRows + 1) / 2);
  // Spot-check the content against the server's own computation.
  EXPECT_EQ(std::string(PQgetvalue(result.get(), kRows - 1, 1)), scalar(conn, "SELECT md5('50000')"));

  // One value far larger than any socket buffer, which must be forwarded in pieces.
  const PgResult big = exec(conn, "SELECT repeat('abcdefgh', 1024 * 1024)");  // 8 MiB
  ASSERT_EQ(PQresultStatus(big.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(big.get());
  ASSERT_EQ(PQgetlength(big.get(), 0, 0), 8 * 1024 * 1024);
  const std::string value(PQgetvalue(big.get(), 0, 0), std::size_t{8} * 1024 * 1024);
  EXPECT_EQ(value.find_first_not_of("abcdefgh"), std::string::npos);
  EXPECT_EQ(value.substr(value.size() - 8), "abcdefgh");

  // And as large a query text, client to server.
  const std::string literal(std::size_t{4} * 1024 * 1024, 'q');
  EXPECT_EQ(scalar(conn, "SELECT length('" + literal + "')"), std::to_string(literal.size()));
}

struct Notice {
  std::string severity;
  std::string sqlstate;
  std::string message;
};

void collect_notice(void* arg, const PGresult* result) {
  auto* notices = static_cast<std::vector<Notice>*>(arg);
  const auto field = [&](int code) {
    const char* value = PQresultErrorField(result, code);
    return std::string(value != nullptr ? value : "");
  };
  notices->push_back(
      {field(PG_DIAG_SEVERITY_NONLOCALIZED), field(PG_DIAG_SQLSTATE), field(PG_DIAG_MESSAGE_PRIMARY)});
}

TEST(PoolerQueryTest, NoticesPassThrough) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());
  std::vector<Notice> notices;
  PQsetNoticeReceiver(conn.get(), collect_notice, &notices);

  exec_ok(conn, "DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; RAISE WARNING 'careful'; END $$");
  ASSERT_EQ(notices.size(), 2U);
  EXPECT_EQ(notices[0].severity, "NOTICE");
  EXPECT_EQ(notices[0].sqlstate, "00000");
  EXPECT_EQ(notices[0].message, "hello from plpgsql");
  EXPECT_EQ(notices[1].severity, "WARNING");
  EXPECT_EQ(notices[1].sqlstate, "01000");
  EXPECT_EQ(notices[1].message, "careful");

  // A notice that the server raises on its own, inside the extended protocol.
  notices.clear();
  const PgResult result(PQexecParams(conn.get(), "DROP TABLE IF EXISTS pooler_query_no_such_table", 0,
                                     nullptr, nullptr, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(result.get());
  ASSERT_EQ(notices.size(), 1U);
  EXPECT_EQ(notices[0].severity, "NOTICE");
  EXPECT_NE(notices[0].message.find("does not exist, skipping"), std::string::npos) << notices[0].message;
}

TEST(PoolerQueryTest, ErrorsCarryTheServersSqlstateAndLeaveTheConnectionUsable) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());

  const PgResult missing = exec(conn, "SELECT * FROM pooler_query_missing_table");
  EXPECT_EQ(PQresultStatus(missing.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(missing), "42P01");
  EXPECT_NE(std::string(PQresultErrorMessage(missing.get())).find("pooler_query_missing_table"),
            std::string::npos);
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");

  const PgResult syntax = exec(conn, "SELEC 1");
  EXPECT_EQ(sqlstate(syntax), "42601");
  EXPECT_EQ(scalar(conn, "SELECT 2"), "2");

  const PgResult divide = exec(conn, "SELECT 1 / 0");
  EXPECT_EQ(sqlstate(divide), "22012");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_IDLE);

  // An error in the extended protocol: the server skips to Sync, and the pool must still see it end.
  const char* values[] = {"not a number"};
  const PgResult bad_param(
      PQexecParams(conn.get(), "SELECT $1::int", 1, nullptr, values, nullptr, nullptr, 0));
  EXPECT_EQ(PQresultStatus(bad_param.get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(bad_param), "22P02");
  const PgResult bad_parse(
      PQexecParams(conn.get(), "SELECT FROM WHERE", 0, nullptr, nullptr, nullptr, nullptr, 0));
  EXPECT_EQ(sqlstate(bad_parse), "42601");

  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK);
  EXPECT_EQ(scalar(conn, "SELECT 'still here'"), "still here");

  // pool_size 1: a second client gets the same server, which must not carry the errors along.
  const PgConn other = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(other, "SELECT 3"), "3");
  EXPECT_EQ(PQtransactionStatus(other.get()), PQTRANS_IDLE);
}

TEST(PoolerQueryTest, SeveralStatementsInOneQueryString) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());

  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT 1; SELECT 'two'; SELECT g FROM generate_series(1, 3) g"), 1);
  const std::vector<PgResult> results = drain_results(conn);
  ASSERT_EQ(results.size(), 3U);
  for (const PgResult& result : results) {
    ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result.get());
  }
  EXPECT_STREQ(PQgetvalue(results[0].get(), 0, 0), "1");
  EXPECT_STREQ(PQgetvalue(results[1].get(), 0, 0), "two");
  EXPECT_EQ(PQntuples(results[2].get()), 3);

  // An error stops the rest of the string; the next query works.
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT 1; SELECT 1 / 0; SELECT 3"), 1);
  const std::vector<PgResult> failed = drain_results(conn);
  ASSERT_EQ(failed.size(), 2U);
  EXPECT_EQ(PQresultStatus(failed[0].get()), PGRES_TUPLES_OK);
  EXPECT_EQ(PQresultStatus(failed[1].get()), PGRES_FATAL_ERROR);
  EXPECT_EQ(sqlstate(failed[1]), "22012");
  EXPECT_EQ(scalar(conn, "SELECT 4"), "4");
}

TEST(PoolerQueryTest, PipelineWithSeveralSyncs) {
  // pool_size 1 and a second client: a server released too early (after the first Sync's
  // ReadyForQuery while later ones are still in flight) would mix the two clients' replies.
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());
  const PgConn other = connect(sluiced.conninfo());

  ASSERT_EQ(PQenterPipelineMode(conn.get()), 1);
  constexpr int kBatches = 5;
  for (int batch = 0; batch < kBatches; ++batch) {
    const std::string a = std::to_string(batch * 10);
    const std::string b = std::to_string(batch * 10 + 1);
    const char* first[] = {a.c_str()};
    const char* second[] = {b.c_str()};
    ASSERT_EQ(PQsendQueryParams(conn.get(), "SELECT $1::int, pg_sleep(0.01)::text", 1, nullptr, first,
                                nullptr, nullptr, 0),
              1);
    ASSERT_EQ(PQsendQueryParams(conn.get(), "SELECT $1::int", 1, nullptr, second, nullptr, nullptr, 0), 1);
    ASSERT_EQ(PQpipelineSync(conn.get()), 1);
  }
  ASSERT_EQ(PQflush(conn.get()), 0);

  // Meanwhile the other client queries: it has to fit between the batches or wait for all of them.
  ASSERT_EQ(PQsendQuery(other.get(), "SELECT 'other'"), 1);

  for (int batch = 0; batch < kBatches; ++batch) {
    for (int query = 0; query < 2; ++query) {
      const PgResult result(PQgetResult(conn.get()));
      ASSERT_TRUE(result) << "batch " << batch << " query " << query << ": " << PQerrorMessage(conn.get());
      ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK)
          << "batch " << batch << " query " << query << ": " << PQresultErrorMessage(result.get());
      EXPECT_EQ(std::string(PQgetvalue(result.get(), 0, 0)), std::to_string(batch * 10 + query));
      EXPECT_EQ(PQgetResult(conn.get()), nullptr);
    }
    const PgResult sync(PQgetResult(conn.get()));
    ASSERT_TRUE(sync);
    EXPECT_EQ(PQresultStatus(sync.get()), PGRES_PIPELINE_SYNC) << "batch " << batch;
  }
  ASSERT_EQ(PQexitPipelineMode(conn.get()), 1) << PQerrorMessage(conn.get());

  const std::vector<PgResult> other_results = drain_results(other);
  ASSERT_EQ(other_results.size(), 1U);
  ASSERT_EQ(PQresultStatus(other_results[0].get()), PGRES_TUPLES_OK)
      << PQresultErrorMessage(other_results[0].get());
  EXPECT_STREQ(PQgetvalue(other_results[0].get(), 0, 0), "other");

  EXPECT_EQ(scalar(conn, "SELECT 'done'"), "done");
  EXPECT_EQ(scalar(other, "SELECT 'done too'"), "done too");
}

}  // namespace
}  // namespace harness
