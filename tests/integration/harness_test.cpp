// The harness's own smoke tests: the throwaway PostgreSQL, without sluiced.
#include "tests/integration/harness.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <string>

namespace harness {
namespace {

TEST(PostgresServerTest, AnswersOnItsSocket) {
  const PostgresServer& pg = postgres();
  struct stat st {};
  const std::string socket = pg.socket_dir() + "/.s.PGSQL." + std::to_string(pg.port());
  ASSERT_EQ(stat(socket.c_str(), &st), 0) << socket;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));

  const PgConn conn = connect(pg.conninfo());
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
  EXPECT_EQ(scalar(conn, "SHOW server_encoding"), "UTF8");
  EXPECT_EQ(scalar(conn, "SHOW listen_addresses"), "");
}

TEST(PostgresServerTest, InvokingUserIsSuperuser) {
  const PgConn conn = connect(postgres().conninfo());
  EXPECT_EQ(scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"), "t");
  const PgConn as_postgres = connect(postgres().conninfo("postgres", "postgres"));
  EXPECT_EQ(scalar(as_postgres, "SELECT current_user"), "postgres");
}

TEST(PostgresServerTest, ReportsErrorsAndSurvivesThem) {
  const PgConn conn = connect(postgres().conninfo());
  const PgResult result = exec(conn, "SELECT * FROM no_such_table");
  EXPECT_EQ(PQresultStatus(result.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE), "42P01");
  EXPECT_THROW(scalar(conn, "SELECT 1, 2"), std::runtime_error);
  EXPECT_THROW(exec_ok(conn, "SELEC 1"), std::runtime_error);
  EXPECT_EQ(scalar(conn, "SELECT 2"), "2");
}

TEST(PostgresServerTest, RestartKeepsDataAndDropsConnections) {
  PostgresServer& pg = postgres();
  const PgConn before = connect(pg.conninfo());
  exec_ok(before, "CREATE TABLE restart_probe (n int); INSERT INTO restart_probe VALUES (42)");

  pg.restart();
  ASSERT_TRUE(pg.running());

  const PgResult lost = exec(before, "SELECT 1");
  EXPECT_NE(PQresultStatus(lost.get()), PGRES_TUPLES_OK);
  EXPECT_EQ(PQstatus(before.get()), CONNECTION_BAD);

  const PgConn after = connect(pg.conninfo());
  EXPECT_EQ(scalar(after, "SELECT n FROM restart_probe"), "42");
  exec_ok(after, "DROP TABLE restart_probe");
}

TEST(PostgresServerTest, StoppedServerRefusesThenStartsAgain) {
  PostgresServer& pg = postgres();
  pg.stop();
  EXPECT_FALSE(pg.running());
  const PgConn refused = try_connect(pg.conninfo());
  EXPECT_EQ(PQstatus(refused.get()), CONNECTION_BAD);
  pg.start();
  EXPECT_EQ(scalar(connect(pg.conninfo()), "SELECT 1"), "1");
}

TEST(WaitUntilTest, ReturnsOnceThePredicateHolds) {
  int calls = 0;
  EXPECT_TRUE(wait_until([&] { return ++calls == 3; }, std::chrono::seconds(5)));
  EXPECT_EQ(calls, 3);
}

TEST(WaitUntilTest, GivesUpAtTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(wait_until([] { return false; }, std::chrono::milliseconds(50)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace harness
