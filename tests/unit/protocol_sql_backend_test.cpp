// What a query does to state that lives in its backend (temporary objects, advisory locks, WITH
// HOLD cursors, LISTEN, SQL PREPARE, LOAD): a miss would leave a client's state on a server
// another client gets, a false "touches" costs one query to the server, a false "creates" a
// refusal under session_state "refuse".
#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "protocol/sql_commands.h"

namespace sluice::protocol {
namespace {

using enum SqlBackendEffect;

TEST(SqlBackendTest, PlainQueriesTouchNothing) {
  for (const char* sql :
       {"SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, now())",
        "insert into temp_log values (1)", "select 'create temp table x()', \"listen\" from t",
        "SELECT pg_advisory_xact_lock(1)", "select * from templates into_table",
        "BEGIN; DECLARE c CURSOR FOR SELECT 1; FETCH c; COMMIT", "EXPLAIN SELECT 1",
        "CREATE TABLE temp (a int)", "SELECT \"PG_ADVISORY_LOCK\"(1)", "PREPARE TRANSACTION 'gid'", "",
        ";;"}) {
    EXPECT_EQ(find_sql_backend_effect(sql), none) << sql;
  }
}

TEST(SqlBackendTest, StatementsThatMakeBackendState) {
  for (const char* sql : {"CREATE TEMP TABLE trace (a int)",
                          "create temporary table t as select 1",
                          "CREATE LOCAL TEMPORARY SEQUENCE s",
                          "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
                          "create table pg_temp.t (a int)",
                          "create function pg_temp.f() returns int as 'select 1' language sql",
                          "SELECT 1 INTO TEMP t",
                          "select * into temporary table t from x",
                          "select pg_catalog.pg_try_advisory_lock(1, 2)",
                          "LISTEN news",
                          "select 1; listen \"x\"",
                          "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                          "declare c no scroll cursor with hold for select 1",
                          "PREPARE q AS SELECT 1",
                          "prepare transaction as select 1",
                          "PREPARE q(int) AS SELECT $1",
                          "/* c */ LISTEN x",
                          "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
                          "EXPLAIN SELECT pg_advisory_lock(1)",
                          "select pg_advisory_lock(1), pg_try_advisory_lock(2)",
                          "SELECT pg_advisory_lock(1); SELECT pg_advisory_unlock(2)",
                          "select pg_advisory_unlock(2), pg_advisory_lock_shared(1)",
                          "explain (analyze, costs off) select 1 into temp t",
                          "select pg_catalog.\"pg_try_advisory_lock\"(1)",
                          "CREATE TABLE \"pg_temp\".t (a int)",
                          "(SELECT 1 INTO TEMP t)"}) {
    EXPECT_EQ(find_sql_backend_effect(sql), creates) << sql;
  }
  EXPECT_EQ(find_sql_backend_effect("LOAD 'auto_explain'"), loads_library);
  EXPECT_EQ(find_sql_backend_effect("listen a; load 'x'"), loads_library);
  EXPECT_EQ(find_sql_backend_effect("SELECT dblink_connect('c', 'dbname=x')"), loads_library);
}

// Once it has run the lock is held: the client keeps its server without asking it.
TEST(SqlBackendTest, StatementsThatTakeASessionLockAndNothingElse) {
  for (const char* sql :
       {"SELECT pg_advisory_lock(42)", "SELECT PG_ADVISORY_LOCK_SHARED(7)", "SELECT \"pg_advisory_lock\"(1)",
        "select pg_catalog.pg_advisory_lock(1, 2)",
        "SELECT pg_advisory_lock(1); SELECT abalance FROM pgbench_accounts",
        "select pg_advisory_lock(1), pg_advisory_lock_shared(2)", "select 1; select pg_advisory_lock(1)",
        "EXPLAIN SELECT 1; SELECT pg_advisory_lock(1)"}) {
    EXPECT_EQ(find_sql_backend_effect(sql), takes_session_lock) << sql;
    EXPECT_TRUE(makes_backend_state(find_sql_backend_effect(sql))) << sql;  // refused under "refuse"
  }
  // Where it may not run, the server is asked.
  for (const char* sql :
       {"EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", "CREATE VIEW v AS SELECT pg_advisory_lock(id) FROM t",
        "DECLARE c CURSOR FOR SELECT pg_advisory_lock(1)", "WITH x AS (SELECT pg_advisory_lock(1)) SELECT 1",
        "GRANT EXECUTE ON FUNCTION pg_advisory_lock(bigint) TO app",
        "CREATE TEMP TABLE t ON COMMIT DROP AS SELECT pg_advisory_lock(1)",
        "select pg_advisory_lock(1); listen x", "(SELECT pg_advisory_lock(1))",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT pg_advisory_lock(1); "
        "END"}) {
    EXPECT_EQ(find_sql_backend_effect(sql), creates) << sql;
  }
  EXPECT_EQ(find_sql_backend_effect("select pg_advisory_lock(1); load 'x'"), loads_library);
  EXPECT_FALSE(makes_backend_state(touches));
}

TEST(SqlBackendTest, StatementsThatMayDropItOrHideWhatTheyDo) {
  for (const char* sql :
       {"UNLISTEN *", "DEALLOCATE q", "DEALLOCATE ALL", "CLOSE ALL", "DISCARD TEMP", "DISCARD ALL",
        "DROP TABLE trace", "SELECT pg_advisory_unlock(42)", "select pg_advisory_unlock_all()",
        "DO $$ BEGIN PERFORM 1; END $$", "CALL p()", "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
        "begin; create temp table t on commit drop as select 1; commit"}) {
    EXPECT_EQ(find_sql_backend_effect(sql), touches) << sql;
  }
}

// Quotes and comments are skipped as PostgreSQL skips them.
TEST(SqlBackendTest, QuotedWordsAreNotCommands) {
  EXPECT_EQ(find_sql_backend_effect("SELECT 'LISTEN x; CREATE TEMP TABLE t()'"), none);
  EXPECT_EQ(find_sql_backend_effect("SELECT $q$ pg_advisory_lock(1) $q$"), none);
  EXPECT_EQ(find_sql_backend_effect("SELECT 1 -- ; listen x"), none);
  EXPECT_EQ(find_sql_backend_effect("select 'x' into_temp"), none);
}

TEST(SqlBackendTest, AllThreeInOneLook) {
  const SqlCommands commands = find_sql_commands("SET search_path = x; PREPARE q AS SELECT 1; LISTEN y");
  EXPECT_EQ(commands.session, SqlSessionEffect::settings);
  EXPECT_EQ(commands.prepared.command, SqlPreparedCommand::prepare);
  EXPECT_EQ(commands.backend, creates);
}

TEST(SqlBackendTest, EveryMarkIsSeenWhereverItFalls) {
  // The look before the lexers stops at ';', '_' and 'i', sixteen bytes at a time, the last few
  // copied into a block of their own: each must count wherever it falls, in a block, on its edges,
  // or in the last bytes (as the padding grows, the short endings below take every place there
  // from which what follows the mark can still be told: up to the 13th of 15 for ";do").
  for (std::size_t pad = 0; pad <= 40; ++pad) {
    const std::string select = "select " + std::string(pad, 'a');
    EXPECT_EQ(find_sql_commands(select + ";do").session, SqlSessionEffect::settings) << pad;
    EXPECT_EQ(find_sql_commands(select + ";set x=1").session, SqlSessionEffect::settings) << pad;
    EXPECT_EQ(find_sql_commands(select + ";execute q").prepared.command, SqlPreparedCommand::execute) << pad;
    EXPECT_EQ(find_sql_commands(select + ",set_config('a', 'b', false)").session, SqlSessionEffect::settings)
        << pad;
    EXPECT_EQ(find_sql_commands(select + ",pg_advisory_lock(1)").backend, takes_session_lock) << pad;
    EXPECT_EQ(find_sql_commands(select + ",pg_temp.f()").backend, touches) << pad;
    EXPECT_EQ(find_sql_commands(select + " into temp t").backend, creates) << pad;
    EXPECT_EQ(find_sql_commands(select + " INTO TEMP t").backend, creates) << pad;
    EXPECT_EQ(find_sql_commands(select + " in to temp").backend, none) << pad;
  }
}

}  // namespace
}  // namespace sluice::protocol
