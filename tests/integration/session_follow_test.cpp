// Session fidelity I, settings follow their client (issue 13): in transaction mode each client's
// SET, RESET, set_config(), SET ROLE and SET SESSION AUTHORIZATION are its own, with PostgreSQL's
// transaction rules, whichever server runs its next transaction. Every scenario is a script of
// steps by interleaved clients, run once on direct connections and once through sluiced; the
// transcripts must be equal.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"
#include "tests/integration/script_runner.h"

namespace {

using harness::PgConn;
using harness::scalar;

constexpr const char* kDatabase = "session_follow";
constexpr const char* kLowRole = "session_follow_low";

using script_test::run_script;
using script_test::Step;

class SessionFollowTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    scope_test::ensure_database(kDatabase);
    const PgConn admin = harness::connect(harness::postgres().conninfo(kDatabase));
    harness::exec(admin, std::string("create role ") + kLowRole);
    harness::exec_ok(admin, "create table if not exists guarded (id int)");
    harness::exec_ok(admin, "insert into guarded values (1)");
    harness::exec_ok(admin, "revoke all on guarded from public");
    harness::exec_ok(admin, "create schema if not exists follow_a");
    harness::exec_ok(admin, "create schema if not exists follow_b");
  }
  void SetUp() override {
    sluiced_.emplace(harness::PoolOptions{.dbname = kDatabase, .pool_size = GetParam()});
  }

  // The script directly and through sluiced; then no server was closed on the way.
  void expect_as_direct(int clients, const std::vector<Step>& script, const std::string& options = "") {
    const auto direct = run_script(harness::postgres().conninfo(kDatabase) + options, clients, script);
    const auto pooled = run_script(sluiced_->conninfo(kDatabase) + options, clients, script);
    ASSERT_EQ(direct.size(), pooled.size());
    for (std::size_t i = 0; i < direct.size(); ++i) EXPECT_EQ(pooled[i], direct[i]) << "step " << i;
    const auto teardown = ctltest::control(sluiced_->control_socket(), {{"cmd", "teardown"}});
    EXPECT_EQ(teardown["outcomes"].value("discard", nlohmann::json::object()).value("count", 0), 0)
        << "the servers are kept: " << teardown.dump();
  }

  std::optional<harness::Sluiced> sluiced_;
};

TEST_P(SessionFollowTest, SetAndResetFollowTheirClient) {
  expect_as_direct(2, {
                          {0, "set search_path = follow_a, public"},
                          {1, "show search_path"},
                          {0, "show search_path"},
                          {1, "set session search_path to follow_b"},
                          {0, "show search_path"},
                          {1, "show search_path"},
                          {0, "select set_config('application_name', 'client zero', false)"},
                          {1, "show application_name"},
                          {0, "show application_name"},
                          {0, "set datestyle = 'SQL, DMY'", /*extended=*/true},
                          {1, "select '2024-03-04'::date::text"},
                          {0, "select '2024-03-04'::date::text", /*extended=*/true},
                          {1, "set extra_float_digits = -5; set timezone = 'Asia/Tokyo'"},
                          {0, "select 0.1::float8::text, current_setting('TimeZone')"},
                          {1, "select 0.1::float8::text, current_setting('TimeZone')"},
                          {0, "reset search_path"},
                          {0, "show search_path"},
                          {1, "show search_path"},
                          {1, "reset all"},
                          {1, "select current_setting('search_path'), current_setting('TimeZone')"},
                          {0, "show datestyle"},
                          {0, "discard all"},
                          {0, "select current_setting('datestyle'), current_setting('application_name')"},
                      });
}

// PostgreSQL's transaction rules: a rolled-back SET is undone, so is one rolled back to a savepoint,
// SET LOCAL ends with its transaction, a SET in a committed transaction stays, and a transaction
// aborted by an error keeps nothing. (On a pool of one, a client waits while another's transaction
// is open, so the clients take turns between transactions.)
TEST_P(SessionFollowTest, TransactionsDecideWhatStays) {
  expect_as_direct(2, {
                          {0, "begin"},
                          {0, "set work_mem = '9MB'"},
                          {0, "savepoint s"},
                          {0, "set work_mem = '10MB'"},
                          {0, "rollback to s"},
                          {0, "show work_mem"},
                          {0, "commit"},
                          {0, "show work_mem"},
                          {1, "show work_mem"},
                          {1, "begin; set timezone = 'Asia/Tokyo'; rollback"},
                          {1, "show timezone"},
                          {0, "begin"},
                          {0, "set local statement_timeout = '5s'"},
                          {0, "set lock_timeout = '7s'"},
                          {0, "show statement_timeout"},
                          {0, "commit"},
                          {0, "select current_setting('statement_timeout'), current_setting('lock_timeout')"},
                          {1, "begin"},
                          {1, "set search_path = follow_b"},
                          {1, "select 1/0"},
                          {1, "rollback"},
                          {1, "show search_path"},
                          {0, "set session characteristics as transaction read only"},
                          {1, "create table follow_written (id int)"},
                          {1, "drop table follow_written"},
                          {0, "create table follow_refused (id int)"},
                          {0, "set default_transaction_read_only = off"},
                          // SET TRANSACTION ends with its transaction (RESET ALL leaves it alone).
                          {1, "begin"},
                          {1, "set transaction isolation level serializable"},
                          {1, "commit"},
                          {0, "set session characteristics as transaction isolation level repeatable read"},
                          {0, "show transaction_isolation"},
                          {1, "show transaction_isolation"},
                      });
}

// The security hole: a client changes its role for the session, three ways. Another client
// on the same server never runs as that role; the changed client never runs as its login role
// again, so a DELETE it has no right to fails, as it does on a direct connection.
TEST_P(SessionFollowTest, RolesFollowTheirClient) {
  for (const std::string& change :
       {std::string("set session authorization ") + kLowRole, std::string("set role ") + kLowRole,
        std::string("select set_config('role', '") + kLowRole + "', false) is not null"}) {
    SCOPED_TRACE(change);
    expect_as_direct(2, {
                            {0, change},
                            {1, "select current_user, session_user"},
                            {0, "select current_user"},
                            {0, "delete from guarded"},
                            {1, "select current_user"},
                            {0, "select count(*) from guarded"},
                            {0, "begin"},
                            {0, "reset role"},
                            {0, "rollback"},
                            {0, "select current_user"},
                            {0, "reset role"},
                            {0, "reset session authorization"},
                            {0, "select current_user, session_user"},
                            {1, "select current_user, session_user"},
                        });
  }
}

// Custom settings ("app.tenant", as row-level security policies read them) are not listed by
// pg_settings; they follow their client all the same.
TEST_P(SessionFollowTest, CustomSettingsFollowTheirClient) {
  expect_as_direct(2, {
                          {0, "set app.tenant = '42'"},
                          {0, "show app.tenant"},
                          // A placeholder another client's settings made stays on a server, empty: ''
                          // where a fresh connection says NULL (README "Limits").
                          {1, "select coalesce(nullif(current_setting('app.tenant', true), ''), 'unset')"},
                          {0, "select set_config('app.user', 'alice', false)"},
                          {1, "set session app.tenant to '7'"},
                          {0, "select current_setting('app.tenant'), current_setting('app.user')"},
                          {1, "show app.tenant"},
                          {0, "begin"},
                          {0, "set app.tenant = '43'"},
                          {0, "rollback"},
                          {0, "show app.tenant"},
                          {0, "reset app.tenant"},
                          {0, "select coalesce(nullif(current_setting('app.tenant', true), ''), 'unset')"},
                      });
}

// statement_timeout follows its client too, though the read of the client's settings lifts it
// (pg_settings can take longer than a short timeout on a fresh server).
TEST_P(SessionFollowTest, StatementTimeoutFollowsItsClient) {
  expect_as_direct(2, {
                          {0, "set statement_timeout = '2s'"},
                          {0, "set search_path = follow_a"},
                          {1, "show statement_timeout"},
                          {0, "select current_setting('statement_timeout'), current_setting('search_path')"},
                          {0, "reset statement_timeout"},
                          {0, "show statement_timeout"},
                      });
}

// A client's session client_encoding does not garble the values read back with it.
TEST_P(SessionFollowTest, ValuesKeepTheirBytesUnderAnotherEncoding) {
  expect_as_direct(2, {
                          {0, "set client_encoding = 'LATIN1'"},
                          {0, "set app.who = 'Jos\xe9'"},
                          {1, "select 1"},
                          {0, "select current_setting('app.who'), current_setting('client_encoding')"},
                      });
}

// Values travel as bytes: an SJIS value whose second byte is a backslash, and one LATIN1 cannot
// hold after a LATIN1 client switched to UTF8, come back as they were set.
TEST_P(SessionFollowTest, ValuesKeepTheirBytesInAnyEncoding) {
  expect_as_direct(2, {
                          {0, "set client_encoding = 'SJIS'"},
                          {0, "set app.x = '\x83\x5c'"},
                          {0, std::string("set role ") + kLowRole},
                          {1, "select 1"},
                          {0, "select current_setting('app.x') = '\x83\x5c', current_user"},
                      });
  expect_as_direct(2,
                   {
                       {0, "set client_encoding = 'UTF8'"},
                       {0, "set app.y = '\xce\xa9'"},
                       {1, "select 1"},
                       {0, "select current_setting('app.y') = '\xce\xa9'"},
                   },
                   " client_encoding=LATIN1");
}

// A role given at startup is the pool's baseline: releases keep their servers, and RESET ROLE
// returns to it.
TEST_P(SessionFollowTest, AStartupRoleIsTheBaseline) {
  expect_as_direct(2,
                   {
                       {0, "select current_user"},
                       {0, "set search_path = follow_a"},
                       {1, "select current_user, current_setting('search_path')"},
                       {0, "set role none"},
                       {0, "select current_user"},
                       {0, "reset role"},
                       {0, "select current_user, current_setting('search_path')"},
                   },
                   std::string(" options='-c role=") + kLowRole + "'");
}

// RESET returns to the client's own startup value, as PostgreSQL's does.
TEST_P(SessionFollowTest, ResetReturnsToTheStartupValue) {
  expect_as_direct(2,
                   {
                       {0, "set search_path = follow_a"},
                       {1, "show search_path"},
                       {0, "show search_path"},
                       {0, "reset search_path"},
                       {0, "show search_path"},
                       {1, "set timezone = 'UTC'"},
                       {1, "reset all"},
                       {1, "select current_setting('TimeZone'), current_setting('search_path')"},
                   },
                   " options='-c search_path=follow_b -c TimeZone=America/Los_Angeles'");
}

// sluicectl clients counts a client's settings, startup and session ones; --json names them.
TEST_P(SessionFollowTest, ClientsShowTheirSettings) {
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase) + " application_name=shown");
  harness::exec_ok(client, "set search_path = follow_a");
  harness::exec_ok(client, "set role " + std::string(kLowRole));
  harness::exec_ok(client, "select 1");  // its settings were read after the first transaction
  const auto clients = ctltest::control(sluiced_->control_socket(), {{"cmd", "clients"}});
  ASSERT_EQ(clients["clients"].size(), 1U) << clients.dump();
  EXPECT_EQ(clients["clients"][0]["settings"],
            (nlohmann::json{{"application_name", "shown"}, {"search_path", "follow_a"}, {"role", kLowRole}}))
      << clients.dump();
}

INSTANTIATE_TEST_SUITE_P(Pools, SessionFollowTest, ::testing::Values(1, 2),
                         [](const auto& test) { return "pool_of_" + std::to_string(test.param); });

// A role that may no longer be taken cannot be put on the next server: the client is told, with
// PostgreSQL's words, and nothing it sent behind runs as its login role.
TEST(SessionFollowRefusalTest, ARoleThatCannotBeRestoredEndsTheSession) {
  scope_test::ensure_database(kDatabase);
  const PgConn admin = harness::connect(harness::postgres().conninfo(kDatabase));
  harness::exec(admin, "create role session_follow_login login");
  harness::exec(admin, "create role session_follow_granted");
  harness::exec_ok(admin, "grant session_follow_granted to session_follow_login");
  harness::exec_ok(admin, "create table if not exists follow_marks (who text)");
  harness::exec_ok(admin, "grant all on follow_marks to public");
  harness::exec_ok(admin, "truncate follow_marks");
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1});
  const PgConn client = harness::connect(sluiced.conninfo(kDatabase, "session_follow_login"));
  harness::exec_ok(client, "set role session_follow_granted");
  harness::exec_ok(admin, "revoke session_follow_granted from session_follow_login");
  // Even a ROLLBACK ahead of the insert, in the same write, cannot end the restore's failed block.
  const harness::PgResult result =
      harness::exec(client, "rollback; insert into follow_marks values (current_user)");
  // libpq keeps the FATAL's words (not its SQLSTATE, 42501) when the connection closes behind it.
  EXPECT_NE(std::string(PQerrorMessage(client.get()))
                .find("FATAL:  could not restore this session's settings"
                      " on a server connection: permission denied to set"
                      " role \"session_follow_granted\""),
            std::string::npos)
      << PQerrorMessage(client.get());
  EXPECT_EQ(scalar(admin, "select count(*) from follow_marks"), "0") << "its insert did not run";
  EXPECT_TRUE(scope_test::connection_closed(client.get()));
}

// The load: 50 clients, each with its own search_path, TimeZone and application_name, run
// 200 transactions each on a pool of 2 and see their own values every time.
TEST(SessionFollowLoadTest, FiftyClientsKeepTheirOwnSettings) {
  scope_test::ensure_database(kDatabase);
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 2});
  constexpr int kClients = 50;
  constexpr int kTransactions = 200;
  const char* zones[] = {"UTC", "Asia/Tokyo", "America/Los_Angeles", "Europe/Paris", "Australia/Sydney"};
  std::atomic<int> mismatches{0};
  std::atomic<int> errors{0};
  std::string first_mismatch;
  std::mutex first_mismatch_lock;
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      const std::string path = "schema_" + std::to_string(i);
      const std::string zone = zones[i % 5];
      const std::string app = "client " + std::to_string(i);
      const std::string expected = path + "|" + zone + "|" + app;
      PGconn* conn = PQconnectdb(sluiced.conninfo(kDatabase).c_str());
      const scope_test::OnExit finish([&] { PQfinish(conn); });
      for (const std::string& set : {"set search_path = " + path, "set timezone = '" + zone + "'",
                                     "set application_name = '" + app + "'"}) {
        PGresult* result = PQexec(conn, set.c_str());
        if (PQresultStatus(result) != PGRES_COMMAND_OK) ++errors;
        PQclear(result);
      }
      for (int t = 0; t < kTransactions; ++t) {
        PGresult* result =
            PQexec(conn,
                   "select current_setting('search_path') || '|' || current_setting('TimeZone')"
                   " || '|' || current_setting('application_name')");
        if (PQresultStatus(result) != PGRES_TUPLES_OK) {
          ++errors;
        } else if (PQgetvalue(result, 0, 0) != expected) {
          if (mismatches++ == 0) {
            const std::lock_guard lock(first_mismatch_lock);
            first_mismatch = expected + " but saw " + PQgetvalue(result, 0, 0);
          }
        }
        PQclear(result);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(mismatches.load(), 0) << first_mismatch;
  const auto servers = ctltest::control(sluiced.control_socket(), {{"cmd", "teardown"}});
  EXPECT_EQ(servers["outcomes"].value("discard", nlohmann::json::object()).value("count", 0), 0)
      << servers.dump();
}

}  // namespace
