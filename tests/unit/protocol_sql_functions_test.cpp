// Calls of functions that may change settings unseen (a set_config() inside a PL/pgSQL function),
// and writes to tables whose triggers may run one: a miss leaves a client's setting on a server
// another client gets; a false match costs one read-back of the settings.
#include <gtest/gtest.h>

#include "protocol/sql_commands.h"

namespace sluice::protocol {
namespace {

WatchedNames watched(std::vector<std::string> functions, std::vector<std::string> tables = {}) {
  return {std::move(functions), std::move(tables), false};
}

TEST(SqlFunctionsTest, NothingWatchedMatchesNothing) {
  const WatchedNames none;
  EXPECT_TRUE(none.none());
  EXPECT_FALSE(calls_watched("select fn_set_path()", none));
  EXPECT_FALSE(calls_watched("insert into audited values (1)", none));
}

TEST(SqlFunctionsTest, CallsOfAWatchedFunctionAreFound) {
  const auto names = watched({"fn_a_set", "fn_quoted", "fn_set_path"});
  for (const char* sql : {"select fn_set_path()", "SELECT FN_SET_PATH()", "select public.fn_set_path ()",
                          "select \"public\".\"fn_set_path\"()", "select \"Fn_Quoted\"()",
                          "select 1; select x from t where fn_a_set(2) > 0", "select * from fn_set_path()",
                          "with x as (select fn_set_path()) select 1", "select f(g(fn_set_path(1)))",
                          "select /* c */ fn_set_path /* c */ (1)", "select fn_set_path\n(\n)"}) {
    EXPECT_TRUE(calls_watched(sql, names)) << sql;
  }
}

TEST(SqlFunctionsTest, OtherCallsAndMentionsAreNot) {
  const auto names = watched({"fn_set_path"});
  for (const char* sql :
       {"select 1", "select fn_set_path", "select 'fn_set_path()'", "select $$fn_set_path()$$",
        "select \"fn_set_path()\"", "select fn_set_path_two()", "select count(*) from fn_set_path",
        "-- fn_set_path()\nselect 1", "/* fn_set_path() */ select now()", "select fn_set_paths(1)"}) {
    EXPECT_FALSE(calls_watched(sql, names)) << sql;
  }
}

TEST(SqlFunctionsTest, WritesToAWatchedTableAreFound) {
  const auto names = watched({}, {"audited"});
  for (const char* sql :
       {"insert into audited values (1)", "INSERT INTO public.AUDITED (id) VALUES (1)",
        "update audited set id = 2", "delete from \"audited\"", "truncate audited", "copy audited from stdin",
        "merge into audited a using src s on a.id = s.id "
        "when matched then delete",
        "with moved as (delete from audited returning *) select * from moved",
        "select 1; insert into audited select 1", "explain analyze insert into audited values (1)"}) {
    EXPECT_TRUE(calls_watched(sql, names)) << sql;
  }
  for (const char* sql :
       {"select * from audited", "insert into other values (1)", "select 'insert into audited'",
        "insert into other values (1); select * from audited"}) {
    EXPECT_FALSE(calls_watched(sql, names)) << sql;
  }
}

// Before the catalog is read every call and every write counts; a query with neither does not.
TEST(SqlFunctionsTest, NotKnownYetCountsEveryCallAndWrite) {
  WatchedNames unknown;
  unknown.everything = true;
  EXPECT_TRUE(calls_watched("select now()", unknown));
  EXPECT_TRUE(calls_watched("insert into t values (1)", unknown));
  EXPECT_TRUE(calls_watched("update t set a = 1", unknown));
  EXPECT_FALSE(calls_watched("SELECT abalance FROM pgbench_accounts WHERE aid = 42", unknown));
  EXPECT_FALSE(calls_watched("select 1", unknown));
}

TEST(SqlFunctionsTest, TheCheapLookSeesWhatTheLexerMayFind) {
  EXPECT_FALSE(may_call_functions("SELECT abalance FROM pgbench_accounts WHERE aid = $1"));
  EXPECT_FALSE(may_call_functions("select 1; select 2"));
  EXPECT_TRUE(may_call_functions("select f()"));
  EXPECT_TRUE(may_call_functions("UPDATE t SET a = 1"));
  EXPECT_TRUE(may_call_functions("select 1;  delete from t"));
  EXPECT_TRUE(may_call_functions("-- c\nupdate t set a = 1"));
}

TEST(SqlFunctionsTest, DdlOfFunctionsAndTriggersIsSeen) {
  for (const char* sql :
       {"create function f() returns int language sql as 'select 1'",
        "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ select 1 $$ LANGUAGE sql",
        "create or replace procedure p() language sql as ''", "alter function f() owner to x",
        "drop function if exists f()", "DROP FUNCTION f, g",
        "create trigger t before insert on x "
        "for each row execute function f()",
        "create constraint trigger t after insert on x for each row execute function f()",
        "drop trigger t on x", "create extension hstore", "alter routine r() rename to s",
        "select 1; create function f() returns int language sql as 'select 1'",
        "create or replace view v as select 1"}) {
    EXPECT_TRUE(find_sql_commands(sql).changes_functions) << sql;
  }
  for (const char* sql : {"select 'create function'", "drop table t", "alter table t add column function int",
                          "create index on t (a)", "select 1"}) {
    EXPECT_FALSE(find_sql_commands(sql).changes_functions) << sql;
  }
}

}  // namespace
}  // namespace sluice::protocol
