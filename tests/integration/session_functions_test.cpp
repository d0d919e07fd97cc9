// Session fidelity I, settings changed inside functions: a SET or set_config() run by a function
// that plain SQL calls (PL/pgSQL, SQL-language, a trigger on a table written) is invisible in the
// client's SQL. sluiced learns from the catalog which functions may change settings, reads the
// client's settings back after calling one and returns the server clean: the next client never
// gets them (no leak), and the calling client keeps them. Each scenario runs directly and through
// sluiced; the transcripts must be equal.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"
#include "tests/integration/script_runner.h"

namespace {

using harness::PgConn;
using script_test::run_script;
using script_test::Step;

constexpr const char* kDatabase = "session_functions";

class SessionFunctionsTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    scope_test::ensure_database(kDatabase);
    const PgConn admin = harness::connect(harness::postgres().conninfo(kDatabase));
    harness::exec_ok(admin, "create schema if not exists fn_a");
    harness::exec_ok(admin,
                     "create or replace function fn_set_path() returns void language plpgsql as "
                     "$$ begin perform set_config('search_path', 'fn_a', false); end $$");
    harness::exec_ok(
        admin,
        "create or replace function fn_set_datestyle() returns int language plpgsql as "
        "$$ begin SET datestyle = 'SQL, DMY'; EXECUTE 'SET work_mem = ''9MB'''; return 1; end $$");
    harness::exec_ok(admin,
                     "create or replace function \"Fn_Quoted\"() returns text language plpgsql as "
                     "$$ begin return set_config('extra_float_digits', '-5', false); end $$");
    harness::exec_ok(admin,
                     "create or replace function fn_sql_zone() returns text language sql as "
                     "$$ select set_config('TimeZone', 'Asia/Tokyo', false) $$");
    harness::exec_ok(admin,
                     "create or replace function fn_set_tenant(t text) returns text language plpgsql as "
                     "$$ begin return set_config('app.fn_tenant', t, false); end $$");
    // A comment's "update" before a real SET must not hide it.
    harness::exec_ok(admin,
                     "create or replace function fn_after_comment() returns int language plpgsql as "
                     "$$ begin\n-- update the context\nSET datestyle = 'German, DMY'; return 1; end $$");
    // Wrappers: a function that only calls one that sets, and one that calls the wrapper.
    harness::exec_ok(admin,
                     "create or replace function fn_login(t text) returns int language plpgsql as "
                     "$$ begin perform fn_set_tenant(t); return 1; end $$");
    harness::exec_ok(admin,
                     "create or replace function fn_login_twice(t text) returns int language sql as "
                     "$$ select fn_login(t) $$");
    harness::exec_ok(admin,
                     "create or replace function fn_pure(i int) returns int language plpgsql as "
                     "$$ begin return i + 1; end $$");
    harness::exec_ok(admin, "create table if not exists fn_audited (id int)");
    harness::exec_ok(admin,
                     "create or replace function fn_audit() returns trigger language plpgsql as "
                     "$$ begin perform set_config('application_name', 'audited', false); return new; end $$");
    harness::exec_ok(admin, "drop trigger if exists fn_audit_trigger on fn_audited");
    harness::exec_ok(admin,
                     "create trigger fn_audit_trigger before insert on fn_audited "
                     "for each row execute function fn_audit()");
    harness::exec_ok(admin, "drop function if exists fn_late()");
    harness::exec_ok(admin, "drop function if exists fn_late_same_string()");
  }
  void SetUp() override {
    sluiced_.emplace(harness::PoolOptions{.dbname = kDatabase, .pool_size = GetParam()});
    // The pool's first server reads the catalog before it serves anyone, but a second server opened
    // while that read is under way serves at once (README): the warm-up's query has started the
    // read, not seen it end. Until it ends every call counts, so the tests wait for it: the server
    // that reads stays "resetting" until its reply is taken in.
    const PgConn warm = harness::connect(sluiced_->conninfo(kDatabase));
    harness::exec_ok(warm, "select 1");
    nlohmann::json servers;
    ASSERT_TRUE(harness::wait_until([&] {
      servers = ctltest::control(sluiced_->control_socket(), {{"cmd", "servers"}})["servers"];
      return std::none_of(servers.begin(), servers.end(),
                          [](const nlohmann::json& row) { return row.value("state", "") == "resetting"; });
    })) << "the catalog read did not end: "
        << servers.dump();
  }

  // The script directly and through sluiced; then no server was closed on the way.
  void expect_as_direct(int clients, const std::vector<Step>& script) {
    const auto direct = run_script(harness::postgres().conninfo(kDatabase), clients, script);
    const auto pooled = run_script(sluiced_->conninfo(kDatabase), clients, script);
    ASSERT_EQ(direct.size(), pooled.size());
    for (std::size_t i = 0; i < direct.size(); ++i)
      EXPECT_EQ(pooled[i], direct[i]) << "step " << i << ": " << script[i].sql;
    const auto teardown = ctltest::control(sluiced_->control_socket(), {{"cmd", "teardown"}});
    EXPECT_EQ(teardown["outcomes"].value("discard", nlohmann::json::object()).value("count", 0), 0)
        << "the servers are kept: " << teardown.dump();
  }

  std::optional<harness::Sluiced> sluiced_;
};

// The case: a PL/pgSQL function's set_config(), called from plain SQL, in either protocol
// and whatever way the call is written.
TEST_P(SessionFunctionsTest, APlpgsqlSetConfigStaysWithItsClient) {
  for (const std::string& call :
       {std::string("select fn_set_path()"), std::string("SELECT public.FN_SET_PATH ()"),
        std::string("select 1 from \"public\".\"fn_set_path\"()")}) {
    for (const bool extended : {false, true}) {
      SCOPED_TRACE(call + (extended ? " (extended)" : ""));
      expect_as_direct(2, {
                              {0, call, extended},
                              {1, "show search_path"},
                              {0, "show search_path"},
                              {1, "select current_setting('search_path')"},
                          });
    }
  }
}

// SET and EXECUTE 'SET ...' inside a function, and a quoted function name.
TEST_P(SessionFunctionsTest, SetInsideAFunctionStaysWithItsClient) {
  expect_as_direct(2, {
                          {0, "select fn_set_datestyle()"},
                          {1, "select current_setting('datestyle'), current_setting('work_mem')"},
                          {0, "select current_setting('datestyle'), current_setting('work_mem')"},
                          {1, "select \"Fn_Quoted\"()"},
                          {0, "show extra_float_digits"},
                          {1, "show extra_float_digits"},
                      });
}

TEST_P(SessionFunctionsTest, AnSqlFunctionsSetConfigStaysWithItsClient) {
  expect_as_direct(2, {
                          {0, "select fn_sql_zone() is not null"},
                          {1, "show timezone"},
                          {0, "show timezone"},
                      });
}

// A custom setting a function sets: its name comes from the function's source.
TEST_P(SessionFunctionsTest, ACustomSettingAFunctionSetsStaysWithItsClient) {
  expect_as_direct(2, {
                          {0, "select fn_set_tenant('42')"},
                          {1, "select coalesce(nullif(current_setting('app.fn_tenant', true), ''), 'unset')"},
                          {0, "select current_setting('app.fn_tenant')"},
                      });
}

// A function that sets nothing itself but calls one that does, two calls deep.
TEST_P(SessionFunctionsTest, ASettingMadeThroughAWrapperStaysWithItsClient) {
  expect_as_direct(2, {
                          {0, "select fn_login_twice('7')"},
                          {1, "select coalesce(nullif(current_setting('app.fn_tenant', true), ''), 'unset')"},
                          {0, "select current_setting('app.fn_tenant')"},
                      });
}

TEST_P(SessionFunctionsTest, ASetAfterACommentedUpdateStaysWithItsClient) {
  expect_as_direct(2, {
                          {0, "select fn_after_comment()"},
                          {1, "show datestyle"},
                          {0, "show datestyle"},
                      });
}

// CREATE FUNCTION as a named prepared statement (a driver's statement cache) is DDL all the same:
// the function it makes is watched from its next call on.
TEST_P(SessionFunctionsTest, AFunctionCreatedByANamedStatementIsKnown) {
  const PgConn maker = harness::connect(sluiced_->conninfo(kDatabase));
  const PgConn other = harness::connect(sluiced_->conninfo(kDatabase));
  harness::PgResult prepared(PQprepare(maker.get(), "mk",
                                       "create or replace function fn_named() returns void language plpgsql "
                                       "as $$ begin perform set_config('search_path', 'fn_a', false); end $$",
                                       0, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(prepared.get());
  harness::PgResult made(PQexecPrepared(maker.get(), "mk", 0, nullptr, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(made.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(made.get());
  harness::exec_ok(maker, "select fn_named()");
  EXPECT_EQ(harness::scalar(other, "show search_path"), "\"$user\", public") << "the setting leaked";
  EXPECT_EQ(harness::scalar(maker, "show search_path"), "fn_a") << "the setting did not follow its client";
  const PgConn admin = harness::connect(harness::postgres().conninfo(kDatabase));
  harness::exec_ok(admin, "drop function fn_named()");
}

// A trigger's function runs on DML of its table.
TEST_P(SessionFunctionsTest, ATriggersSettingStaysWithItsClient) {
  expect_as_direct(2, {
                          {0, "insert into fn_audited values (1)"},
                          {1, "show application_name"},
                          {0, "show application_name"},
                          {1, "select count(*) > 0 from fn_audited"},
                          {1, "show application_name"},
                      });
}

// A function made through sluiced after its pool started is known before it is called: in a later
// transaction, and in the same string.
TEST_P(SessionFunctionsTest, AFunctionCreatedLaterIsKnown) {
  const std::string create_late =
      "create or replace function fn_late() returns void language plpgsql as "
      "$$ begin perform set_config('search_path', 'fn_a', false); end $$";
  const std::string create_same =
      "create or replace function fn_late_same_string() returns void language plpgsql as "
      "$$ begin perform set_config('TimeZone', 'Asia/Tokyo', false); end $$; select fn_late_same_string()";
  const std::vector<Step> script = {
      {0, create_late}, {0, "select fn_late()"}, {1, "show search_path"}, {0, "show search_path"},
      {1, create_same}, {0, "show timezone"},    {1, "show timezone"},
  };
  expect_as_direct(2, script);
  const PgConn admin = harness::connect(harness::postgres().conninfo(kDatabase));
  harness::exec_ok(admin, "drop function fn_late()");
  harness::exec_ok(admin, "drop function fn_late_same_string()");
}

// A function that sets nothing costs nothing: the server goes back as it was, unread (its last
// query, as pg_stat_activity shows it, is the client's). One that may set something is read back.
TEST_P(SessionFunctionsTest, AFunctionThatSetsNothingIsNotReadBack) {
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
  harness::exec_ok(client, "select 1");  // the pool's first server has learned the functions
  const PgConn observer = scope_test::direct(kDatabase);
  const auto last_queries = [&] {
    std::vector<std::string> queries;
    for (const auto& backend : scope_test::client_backends(observer, kDatabase))
      queries.push_back(backend.query);
    return queries;
  };
  const auto has = [](const std::vector<std::string>& queries, const std::string& sql) {
    return std::find(queries.begin(), queries.end(), sql) != queries.end();
  };
  harness::exec_ok(client, "select fn_pure(1)");
  EXPECT_TRUE(has(last_queries(), "select fn_pure(1)"))
      << scope_test::describe(scope_test::client_backends(observer, kDatabase));
  harness::exec_ok(client, "select fn_set_path()");
  // Its release (the read-back) runs after the client has its reply.
  EXPECT_TRUE(harness::wait_until([&] { return !has(last_queries(), "select fn_set_path()"); }))
      << "read back after it";
}

INSTANTIATE_TEST_SUITE_P(Pools, SessionFunctionsTest, ::testing::Values(1, 2),
                         [](const auto& test) { return "pool_of_" + std::to_string(test.param); });

// ALTER ROLE / ALTER DATABASE ... SET of a custom setting and of role: what a fresh server has is
// the pool's baseline, so a client's SET of either is its own and the reset server is kept.
TEST(SessionBaselineTest, RoleAndDatabaseDefaultsAreTheBaseline) {
  constexpr const char* kBaselineDatabase = "session_baseline";
  scope_test::ensure_database(kBaselineDatabase);
  {
    const PgConn admin = harness::connect(harness::postgres().conninfo(kBaselineDatabase));
    harness::exec(admin, "create role session_baseline_low");
    harness::exec_ok(admin, "set role none");
    harness::exec_ok(admin, std::string("alter database ") + kBaselineDatabase + " set myapp.base = 'a'");
    harness::exec_ok(admin, "alter role current_user in database " + std::string(kBaselineDatabase) +
                                " set role = session_baseline_low");
  }
  const scope_test::OnExit undo([&] {
    const PgConn admin = harness::connect(harness::postgres().conninfo(kBaselineDatabase));
    harness::exec_ok(admin, "set role none");
    harness::exec_ok(admin, std::string("alter database ") + kBaselineDatabase + " reset myapp.base");
    harness::exec_ok(admin,
                     "alter role current_user in database " + std::string(kBaselineDatabase) + " reset role");
  });
  harness::Sluiced sluiced({.dbname = kBaselineDatabase, .pool_size = 1});
  const std::vector<Step> script = {
      {0, "select current_user, current_setting('myapp.base')"},
      {0, "set myapp.base = 'b'"},
      {0, "set role none"},
      {1, "select current_user, current_setting('myapp.base')"},
      {0, "select current_user, current_setting('myapp.base')"},
      {0, "reset myapp.base"},
      {0, "reset role"},
      {1, "set myapp.base = 'c'"},
      {0, "select current_user, current_setting('myapp.base')"},
      {1, "select current_user, current_setting('myapp.base')"},
  };
  const auto direct = run_script(harness::postgres().conninfo(kBaselineDatabase), 2, script);
  const auto pooled = run_script(sluiced.conninfo(kBaselineDatabase), 2, script);
  ASSERT_EQ(direct.size(), pooled.size());
  for (std::size_t i = 0; i < direct.size(); ++i)
    EXPECT_EQ(pooled[i], direct[i]) << "step " << i << ": " << script[i].sql;
  const auto teardown = ctltest::control(sluiced.control_socket(), {{"cmd", "teardown"}});
  EXPECT_EQ(teardown["outcomes"].value("discard", nlohmann::json::object()).value("count", 0), 0)
      << "the servers are kept: " << teardown.dump();
}

// A catalog read that fails is logged with its cause, and the pool serves on. Here the read waits
// for pg_aggregate, locked by another session, until the database's statement_timeout cancels it.
// (The admin's and the locker's logins have built the database's relcache init file by then: a
// login that had to build it would wait for the lock too.)
TEST(SettingFunctionsReadTest, AFailedReadIsLoggedWithItsCause) {
  constexpr const char* kFailingDatabase = "functions_read_fails";
  scope_test::ensure_database(kFailingDatabase);
  {
    const PgConn admin = harness::connect(harness::postgres().conninfo(kFailingDatabase));
    harness::exec_ok(admin,
                     std::string("alter database ") + kFailingDatabase + " set statement_timeout = '300ms'");
  }
  const scope_test::OnExit undo([&] {
    const PgConn admin = harness::connect(harness::postgres().conninfo(kFailingDatabase));
    harness::exec_ok(admin, std::string("alter database ") + kFailingDatabase + " reset statement_timeout");
  });
  const PgConn locker = harness::connect(harness::postgres().conninfo(kFailingDatabase));
  harness::exec_ok(locker, "set statement_timeout = 0");  // its LOCK may wait out an autovacuum
  harness::exec_ok(locker, "begin");
  harness::exec_ok(locker, "lock table pg_catalog.pg_aggregate in access exclusive mode");

  harness::Sluiced sluiced({.dbname = kFailingDatabase, .pool_size = 1});
  const PgConn client = harness::connect(sluiced.conninfo(kFailingDatabase));
  EXPECT_EQ(harness::scalar(client, "select 1"), "1");
  EXPECT_TRUE(harness::wait_until([&] {
    return sluiced.log().find(
               "could not read which functions may change settings (the server answered ERROR "
               "57014 canceling statement due to statement timeout)") != std::string::npos;
  })) << sluiced.log();
  harness::exec_ok(locker, "rollback");
}

}  // namespace
