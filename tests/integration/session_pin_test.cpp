// Session fidelity II, state that cannot move (issue 14): a client that makes state living in its
// backend — a temporary table, a session advisory lock, a WITH HOLD cursor, LISTEN, an SQL
// PREPARE, LOAD — keeps its server in transaction mode until the state is gone, and nothing of it
// reaches another client. Scripts of interleaved clients are run directly and through sluiced on
// a pool of 2: client 0 pins, clients 1 and 2 share the other server, so state would leak if it
// could.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"
#include "tests/integration/script_runner.h"

namespace {

using harness::PgConn;
using harness::scalar;
using script_test::Step;

constexpr const char* kDatabase = "session_pin";

nlohmann::json client_row(const harness::Sluiced& sluiced, std::size_t index) {
  const auto clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}})["clients"];
  return index < clients.size() ? clients[index] : nlohmann::json();
}

// The pin is decided after the client has its reply (the server is asked then): awaited.
std::string pinned_because(const harness::Sluiced& sluiced, const std::string& expected) {
  std::string seen;
  harness::wait_until([&] {
    const auto pinned = client_row(sluiced, 0)["pinned"];
    seen = pinned.is_string() ? pinned.get<std::string>() : "";
    return seen == expected;
  });
  return seen;
}

// Scopes ended with `outcome` ("clean", "discard", ...).
int releases(const harness::Sluiced& sluiced, const std::string& outcome) {
  const auto teardown = ctltest::control(sluiced.control_socket(), {{"cmd", "teardown"}});
  return teardown["outcomes"].value(outcome, nlohmann::json::object()).value("count", 0);
}

int discards(const harness::Sluiced& sluiced) { return releases(sluiced, "discard"); }

// What a fresh session through `sluiced` sees of backend state: nothing, on every server.
std::string leftovers(const harness::Sluiced& sluiced) {
  const PgConn observer = harness::connect(sluiced.conninfo(kDatabase));
  return scalar(observer,
                "select (select count(*) from pg_depend where refclassid = 'pg_namespace'::regclass and "
                "refobjid = pg_my_temp_schema()) || ' temp, ' || "
                "(select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()) || "
                "' locks, ' || (select count(*) from pg_cursors) || ' cursors, ' || "
                "(select count(*) from pg_listening_channels()) || ' channels, ' || "
                "(select count(*) from pg_prepared_statements where from_sql) || ' prepared'");
}
constexpr const char* kNothingLeft = "0 temp, 0 locks, 0 cursors, 0 channels, 0 prepared";

class SessionPinTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }
  void SetUp() override { start_sluiced(2); }

  void start_sluiced(int pool_size) {
    sluiced_.emplace(harness::PoolOptions{
        .dbname = kDatabase, .pool_size = pool_size, .overrides = scope_test::debug_overrides()});
  }
  // A pool of one: a second server cannot open while the first reads the catalog.
  void use_one_server() { start_sluiced(1); }

  void expect_as_direct(int clients, const std::vector<Step>& script) {
    const auto direct = script_test::run_script(harness::postgres().conninfo(kDatabase), clients, script);
    const auto pooled = script_test::run_script(sluiced_->conninfo(kDatabase), clients, script);
    ASSERT_EQ(direct.size(), pooled.size());
    for (std::size_t i = 0; i < direct.size(); ++i) EXPECT_EQ(pooled[i], direct[i]) << "step " << i;
    EXPECT_EQ(discards(*sluiced_), 0) << "the servers are kept";
    EXPECT_EQ(leftovers(*sluiced_), kNothingLeft);
  }

  std::optional<harness::Sluiced> sluiced_;
};

TEST_F(SessionPinTest, TemporaryTablesStayWithTheirClientOverManyTransactions) {
  std::vector<Step> script = {
      {0, "create temp table trace (n int)"},
      {1, "select count(*) from trace"},
      {2, "create temp table other (n int) on commit drop"},
  };
  for (int i = 0; i < 8; ++i) {
    script.push_back({0, "insert into trace values (" + std::to_string(i) + ")"});
    script.push_back({1 + i % 2, "select count(*) from pg_class where relname = 'trace'", i % 2 == 1});
  }
  script.insert(script.end(), {
                                  {0, "begin"},
                                  {0, "insert into trace select generate_series(1, 3)"},
                                  {0, "rollback"},
                                  {0, "select count(*), sum(n) from trace", true},
                                  {2, "select count(*) from trace"},
                                  {0, "drop table trace"},
                                  {1, "create temp table trace (s text)"},
                                  {2, "select count(*) from trace"},
                                  {1, "select count(*) from trace"},
                                  {1, "discard temp"},
                                  {2, "create temp table trace (n int)"},
                              });
  expect_as_direct(3, script);
}

TEST_F(SessionPinTest, AdvisoryLocksAreHeldAcrossTransactionsAndReleased) {
  expect_as_direct(3, {
                          {0, "select pg_advisory_lock(42)"},
                          {1, "select pg_try_advisory_lock(42)"},
                          {2, "select pg_try_advisory_lock(42)"},
                          {0, "select 1"},
                          {1, "select pg_try_advisory_lock(42)", true},
                          {0, "select pg_advisory_lock(42)"},
                          {0, "select pg_advisory_unlock(42)"},
                          {2, "select pg_try_advisory_lock(42)"},
                          {0, "select pg_advisory_unlock(42)"},
                          {1, "select pg_try_advisory_lock(42)"},
                          {1, "select pg_advisory_unlock_all()"},
                          {2, "select pg_try_advisory_xact_lock(42)"},
                      });
}

TEST_F(SessionPinTest, AWithHoldCursorIsFetchedAcrossTransactions) {
  expect_as_direct(3, {
                          {0, "declare c cursor with hold for select generate_series(1, 5)"},
                          {1, "fetch 1 from c"},
                          {0, "fetch 2 from c"},
                          {2, "declare c cursor with hold for select 'b'"},
                          {0, "fetch 2 from c"},
                          {2, "close c"},
                          {0, "fetch 2 from c"},
                          {0, "close all"},
                          {1, "fetch 1 from c"},
                      });
}

TEST_F(SessionPinTest, SqlPrepareExecuteAndDeallocate) {
  expect_as_direct(3, {
                          {0, "prepare q(int) as select $1 * 2"},
                          {1, "execute q(1)"},
                          {0, "execute q(21)"},
                          {2, "prepare q(text) as select $1 || '!'"},
                          {0, "explain (costs off) execute q(1)"},
                          {0, "create temp table doubled as execute q(50)"},
                          {0, "select * from doubled"},
                          {0, "drop table doubled"},
                          {0, "execute q(4)", true},
                          {2, "execute q('b')"},
                          {2, "deallocate q"},
                          {0, "deallocate q"},
                          {0, "execute q(4)"},
                          {1, "execute q(1)"},
                      });
}

// A pinned client's status, and its server kept until the state is gone.
TEST_F(SessionPinTest, PinnedClientsShowWhyAndLetGoWhenTheStateIsGone) {
  const PgConn pinned = harness::connect(sluiced_->conninfo(kDatabase));
  harness::exec_ok(pinned, "create temp table t (n int)");
  harness::exec_ok(pinned, "listen news");
  EXPECT_EQ(pinned_because(*sluiced_, "temporary objects, LISTEN"), "temporary objects, LISTEN");
  const auto pools = ctltest::control(sluiced_->control_socket(), {{"cmd", "pools"}});
  EXPECT_EQ(pools["pools"][0]["clients"]["pinned"], 1);
  EXPECT_EQ(ctltest::status(sluiced_->control_socket())["clients"]["pinned"], 1);
  EXPECT_NE(sluiced_->log().find("pinned to server"), std::string::npos);

  harness::exec_ok(pinned, "drop table t");
  EXPECT_EQ(pinned_because(*sluiced_, "LISTEN"), "LISTEN");
  harness::exec_ok(pinned, "unlisten *");
  EXPECT_EQ(pinned_because(*sluiced_, ""), "");
  EXPECT_TRUE(harness::wait_until([&] { return client_row(*sluiced_, 0)["state"] == "idle"; }))
      << "its server went back to the pool";
}

// Every kind of object PostgreSQL lets a session make in pg_temp pins, not only tables, types
// and functions: each is dropped with the session, so on another server it would not be there
// (make regress, stats_ext: DROP STATISTICS pg_temp.s met "schema pg_temp does not exist").
TEST_F(SessionPinTest, EveryKindOfTemporaryObjectPinsUntilDropped) {
  const PgConn direct = harness::connect(harness::postgres().conninfo(kDatabase));
  harness::exec_ok(direct, "drop table if exists pin_statistics_target");  // a failed run's, if any
  harness::exec_ok(direct, "create table pin_statistics_target (a int, b int)");
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
  const std::pair<const char*, const char*> objects[] = {
      {"create statistics pg_temp.s on a, b from pin_statistics_target", "drop statistics pg_temp.s"},
      {"create operator pg_temp.<<< (procedure = int4lt, leftarg = int, rightarg = int)",
       "drop operator pg_temp.<<< (int, int)"},
      {"create collation pg_temp.c (locale = 'C')", "drop collation pg_temp.c"},
      {"create text search dictionary pg_temp.d (template = simple)",
       "drop text search dictionary pg_temp.d"},
      {"create operator family pg_temp.f using btree", "drop operator family pg_temp.f using btree"},
      {"create function pg_temp.f() returns int language sql as 'select 1'", "drop function pg_temp.f()"},
      {"create temp view v as select 1", "drop view v"},
  };
  for (const auto& [create, drop] : objects) {
    harness::exec_ok(client, create);
    EXPECT_EQ(pinned_because(*sluiced_, "temporary objects"), "temporary objects") << create;
    harness::exec_ok(client, drop);
    EXPECT_EQ(pinned_because(*sluiced_, ""), "") << drop;
  }
  // As stats_ext runs it: another client's transaction takes the server let go of last.
  expect_as_direct(2, {
                          {0, "create statistics pg_temp.s on a, b from pin_statistics_target"},
                          {1, "begin"},
                          {1, "select 1"},
                          {0, "drop statistics pg_temp.s"},
                          {1, "commit"},
                      });
  harness::exec_ok(direct, "drop table pin_statistics_target");
}

// Notifications reach a pinned listener between its transactions, without it asking.
TEST_F(SessionPinTest, ListenNotifyBetweenTwoClients) {
  for (const std::string& conninfo :
       {harness::postgres().conninfo(kDatabase), sluiced_->conninfo(kDatabase)}) {
    const PgConn listener = harness::connect(conninfo);
    const PgConn notifier = harness::connect(conninfo);
    const PgConn bystander = harness::connect(conninfo);
    harness::exec_ok(listener, "listen news");
    harness::exec_ok(bystander, "select 1");
    harness::exec_ok(notifier, "notify news, 'first'");
    harness::exec_ok(notifier, "begin; select pg_notify('news', 'second'); commit");
    std::vector<std::string> payloads;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (payloads.size() < 2 && std::chrono::steady_clock::now() < deadline) {
      pollfd watched{PQsocket(listener.get()), POLLIN, 0};
      ::poll(&watched, 1, 100);
      PQconsumeInput(listener.get());
      while (PGnotify* notify = PQnotifies(listener.get())) {
        payloads.emplace_back(notify->extra);
        PQfreemem(notify);
      }
    }
    EXPECT_EQ(payloads, (std::vector<std::string>{"first", "second"})) << conninfo;
    EXPECT_EQ(scalar(listener, "select 'still fine'"), "still fine");
  }
  EXPECT_EQ(leftovers(*sluiced_), kNothingLeft);
}

// A client that leaves while pinned, even in the middle of a transaction, leaves nothing behind.
TEST_F(SessionPinTest, AClientKilledWhilePinnedLeavesNothingBehind) {
  for (const bool mid_transaction : {false, true}) {
    {
      const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
      harness::exec_ok(client, "create temp table t (n int)");
      harness::exec_ok(client, "select pg_advisory_lock(7)");
      harness::exec_ok(client, "declare c cursor with hold for select 1");
      harness::exec_ok(client, "listen gone");
      harness::exec_ok(client, "prepare p as select 1");
      if (mid_transaction) harness::exec_ok(client, "begin; insert into t values (1)");
    }  // closed without a word
    ASSERT_TRUE(harness::wait_until([&] { return client_row(*sluiced_, 0).is_null(); }));
    // Both servers, whichever the observer gets: the pool of 2 is filled by two observers.
    const PgConn first = harness::connect(sluiced_->conninfo(kDatabase));
    harness::exec_ok(first, "begin");
    EXPECT_EQ(leftovers(*sluiced_), kNothingLeft) << mid_transaction;
    harness::exec_ok(first, "commit");
    EXPECT_EQ(leftovers(*sluiced_), kNothingLeft) << mid_transaction;
  }
  EXPECT_EQ(discards(*sluiced_), 0) << "the pinned servers were wiped and kept";
}

// LOAD cannot be undone: the client keeps its server, which is closed when it leaves.
TEST_F(SessionPinTest, ALoadedLibraryPinsAndTheServerIsClosedAfter) {
  {
    const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
    harness::exec_ok(client, "load 'plpgsql'");
    EXPECT_EQ(pinned_because(*sluiced_, "a loaded library or dblink connection"),
              "a loaded library or dblink connection");
  }
  EXPECT_TRUE(harness::wait_until([&] { return discards(*sluiced_) == 1; }));
}

// Holds up the question sluiced asks a server when a transaction that may have made or dropped
// backend state ends: it reads pg_depend, which this direct session locks until release(). The
// client's next bytes then meet the question still in flight.
class BackendStateQuestionHeld {
 public:
  BackendStateQuestionHeld()
      : locker_(harness::connect(harness::postgres().conninfo(kDatabase))),
        observer_(harness::connect(harness::postgres().conninfo(kDatabase))) {
    asked();  // its catalog lookups made before the lock, which would hold them up too
    harness::exec_ok(locker_, "begin");
    harness::exec_ok(locker_, "lock table pg_catalog.pg_depend in access exclusive mode");
  }
  // A backend waits for the lock with sluiced's question.
  bool asked() {
    return scalar(observer_,
                  "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and "
                  "query like '%pg_my_temp_schema%' and pid <> pg_backend_pid()") == "1";
  }
  void release() { harness::exec_ok(locker_, "commit"); }
  std::string seen() {
    return scalar(observer_,
                  "select string_agg(coalesce(wait_event_type,'-') || ':' || left(query, 60), ' | ') from "
                  "pg_stat_activity where pid <> pg_backend_pid()");
  }

 private:
  PgConn locker_;
  PgConn observer_;
};

// The last query the backend holding advisory lock `key` ran: a pinned client's own statement, or
// sluiced's question (kBackendStateQuery) after it.
std::string last_query_of_lock_holder(int key) {
  const PgConn direct = harness::connect(harness::postgres().conninfo(kDatabase));
  return scalar(direct,
                "select query from pg_stat_activity where pid = (select pid from pg_locks where locktype = "
                "'advisory' and objid = " +
                    std::to_string(key) + ")");
}

// pg_advisory_lock that has run holds its lock: the client is pinned without its server being asked
// (a scan of PostgreSQL's whole lock table). The unlock asks, and lets the server go.
TEST_F(SessionPinTest, ASessionLockPinsWithoutAskingTheServer) {
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
  harness::exec_ok(client, "create temp table t (n int)");
  ASSERT_EQ(pinned_because(*sluiced_, "temporary objects"), "temporary objects");
  harness::exec_ok(client, "select pg_advisory_lock(61)");
  EXPECT_EQ(pinned_because(*sluiced_, "temporary objects, advisory locks"),
            "temporary objects, advisory locks");
  EXPECT_EQ(last_query_of_lock_holder(61), "select pg_advisory_lock(61)");
  harness::exec_ok(client, "drop table t");
  harness::exec_ok(client, "select pg_advisory_unlock(61)");
  EXPECT_EQ(pinned_because(*sluiced_, ""), "");
  // -M prepared's way: a named statement, bound and run.
  const harness::PgResult prepared(
      PQprepare(client.get(), "lock", "select pg_advisory_lock_shared($1)", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK);
  const char* key = "62";
  const harness::PgResult locked(PQexecPrepared(client.get(), "lock", 1, &key, nullptr, nullptr, 0));
  EXPECT_EQ(PQresultStatus(locked.get()), PGRES_TUPLES_OK);
  EXPECT_EQ(pinned_because(*sluiced_, "advisory locks"), "advisory locks");
  EXPECT_EQ(last_query_of_lock_holder(62), "select pg_advisory_lock_shared($1)");
  harness::exec_ok(client, "select pg_advisory_unlock_all()");
  EXPECT_EQ(pinned_because(*sluiced_, ""), "");
  EXPECT_EQ(discards(*sluiced_), 0);
  EXPECT_EQ(leftovers(*sluiced_), kNothingLeft);
}

// A lock that failed is not held: the server is asked, and the client keeps no server.
TEST_F(SessionPinTest, ASessionLockThatFailedIsAskedAbout) {
  const PgConn direct = harness::connect(harness::postgres().conninfo(kDatabase));
  harness::exec_ok(direct, "select pg_advisory_lock(63)");
  // A startup setting, not a SET: the server is not reset at release, and its last query stays.
  use_one_server();  // the question runs where pg_backend_pid() did
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase) + " options='-c lock_timeout=50ms'");
  const std::string server_pid = scalar(client, "select pg_backend_pid()");
  const int clean = releases(*sluiced_, "clean");
  const harness::PgResult failed(PQexec(client.get(), "select pg_advisory_lock(63)"));
  EXPECT_EQ(std::string(PQresultErrorField(failed.get(), PG_DIAG_SQLSTATE)), "55P03");
  // The client has its reply before the server is asked: the scope ends with the answer.
  ASSERT_TRUE(harness::wait_until([&] { return releases(*sluiced_, "clean") > clean; }));
  EXPECT_EQ(pinned_because(*sluiced_, ""), "");
  EXPECT_EQ(ctltest::status(sluiced_->control_socket())["clients"]["pinned"], 0);
  EXPECT_EQ(
      scalar(direct, "select query like 'SELECT pg_catalog.concat_ws(%' from pg_stat_activity where pid = " +
                         server_pid),
      "t")
      << "the server was asked";
  harness::exec_ok(direct, "select pg_advisory_unlock(63)");
  EXPECT_EQ(leftovers(*sluiced_), kNothingLeft);
}

// A client that leaves inside the transaction that took a lock: its server is wiped and proven
// empty on the way back to the pool, and the next client on it is not pinned for that lock.
TEST_F(SessionPinTest, ALockTakenByAClientThatLeftDoesNotPinTheNext) {
  use_one_server();  // the next client surely gets the wiped one
  {
    const PgConn leaving = harness::connect(sluiced_->conninfo(kDatabase));
    harness::exec_ok(leaving, "begin");
    harness::exec_ok(leaving, "select pg_advisory_lock(64)");
  }
  ASSERT_TRUE(harness::wait_until([&] {
    const auto status = ctltest::status(sluiced_->control_socket());
    return status["clients"]["total"] == 0 && status["servers"]["total"] == 1 &&
           status["servers"]["idle"] == 1;
  }));
  EXPECT_EQ(discards(*sluiced_), 0) << "the wiped server was kept";
  const PgConn next = harness::connect(sluiced_->conninfo(kDatabase));
  harness::exec_ok(next, "select 1");
  EXPECT_EQ(ctltest::status(sluiced_->control_socket())["clients"]["pinned"], 0);
  EXPECT_EQ(pinned_because(*sluiced_, ""), "");
  EXPECT_EQ(leftovers(*sluiced_), kNothingLeft);
}

// A client that says goodbye while sluiced asks its server what it holds: the Terminate waits
// behind the question, and then ends the session without a server — here the other server is in
// another client's transaction, and a third client, queued first, takes the freed one for 30 s.
TEST_F(SessionPinTest, ATerminateBehindTheBackendStateQuestionEndsTheSession) {
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
  const PgConn holder = harness::connect(sluiced_->conninfo(kDatabase));
  const PgConn sleeper = harness::connect(sluiced_->conninfo(kDatabase));
  // The client pins the second server (the holder's transaction has the first), as it may when
  // the pool has opened both: the statements' catalog lookups must be made on the pinned server.
  harness::exec_ok(holder, "begin");
  harness::exec_ok(holder, "select 1");
  harness::exec_ok(client, "select pg_advisory_lock(1)");
  harness::exec_ok(holder, "commit");
  ASSERT_EQ(pinned_because(*sluiced_, "advisory locks"), "advisory locks");
  // Once through on it (a lock it does not hold: false, and a WARNING): the backend's own catalog
  // lookups for the unlock and for sluiced's question are made before pg_depend is locked.
  harness::exec_ok(client, "select pg_advisory_unlock(2)");
  ASSERT_EQ(pinned_because(*sluiced_, "advisory locks"), "advisory locks");
  harness::exec_ok(holder, "begin");
  harness::exec_ok(holder, "select 1");  // the pool's other server
  BackendStateQuestionHeld question;
  ASSERT_EQ(PQsendQuery(client.get(), "select pg_advisory_unlock(1)"), 1);
  const auto unlocked = ctltest::await_result(client);
  ASSERT_TRUE(unlocked.has_value());
  EXPECT_EQ(PQgetvalue(unlocked->get(), 0, 0), std::string("t"));
  ASSERT_TRUE(harness::wait_until([&] { return question.asked(); }))
      << "sluiced's question was not held up: " << question.seen();
  ASSERT_EQ(PQsendQuery(sleeper.get(), "select pg_sleep(30)"), 1);
  ASSERT_TRUE(harness::wait_until(
      [&] { return ctltest::status(sluiced_->control_socket())["clients"]["waiting"] == 1; }));
  const char terminate[] = {'X', 0, 0, 0, 4};
  ASSERT_EQ(write(PQsocket(client.get()), terminate, sizeof terminate), 5);
  question.release();

  EXPECT_TRUE(harness::wait_until([&] {
    return sluiced_->log().find("closing because: client terminated") != std::string::npos;
  })) << sluiced_->log();
  PGcancel* cancel = PQgetCancel(sleeper.get());
  std::array<char, 256> error{};
  PQcancel(cancel, error.data(), static_cast<int>(error.size()));
  PQfreeCancel(cancel);
  ctltest::await_result(sleeper);
  harness::exec_ok(holder, "commit");
  EXPECT_EQ(leftovers(*sluiced_), kNothingLeft);
  EXPECT_EQ(discards(*sluiced_), 0);
}

// A drain that begins while sluiced asks a pinned client's server what it holds: the question's
// answer is the client's transaction boundary, where the drain ends it (57P01), not its deadline.
TEST_F(SessionPinTest, ADrainDuringTheBackendStateQuestionEndsTheClientAtItsBoundary) {
  const PgConn client = harness::connect(sluiced_->conninfo(kDatabase));
  ctltest::NoticeLog notices(client);
  harness::exec_ok(client, "create temp table kept (n int)");
  harness::exec_ok(client, "listen first");
  ASSERT_EQ(pinned_because(*sluiced_, "temporary objects, LISTEN"), "temporary objects, LISTEN");
  BackendStateQuestionHeld question;
  ASSERT_EQ(PQsendQuery(client.get(), "listen second"), 1);
  ASSERT_TRUE(ctltest::await_result(client).has_value());
  ASSERT_TRUE(harness::wait_until([&] { return question.asked(); }))
      << "sluiced's question was not held up: " << question.seen();
  const auto drain = ctltest::control(sluiced_->control_socket(), {{"cmd", "drain"}, {"timeout_s", 30}});
  ASSERT_EQ(drain.value("ok", false), true) << drain.dump();
  question.release();

  EXPECT_TRUE(ctltest::await_closed_while_idle(client)) << "the client was not ended at its boundary";
  EXPECT_TRUE(notices.saw_sqlstate("57P01")) << notices.describe();
  nlohmann::json status;
  EXPECT_TRUE(harness::wait_until([&] {
    status = ctltest::status(sluiced_->control_socket());
    return status["state"] == "drained";
  })) << status.dump();
  EXPECT_EQ(status["drain"]["forced"], 0) << status.dump();
}

// session_state "refuse": what would pin is refused with 0A000, the session goes on; state made
// where sluiced cannot see it ends the session, and is wiped.
TEST(SessionStateRefuseTest, StatementsThatWouldPinAreRefused) {
  scope_test::ensure_database(kDatabase);
  const harness::Sluiced sluiced(harness::PoolOptions{
      .dbname = kDatabase, .pool_size = 1, .overrides = {{"pool", {{"session_state", "refuse"}}}}});
  const PgConn client = harness::connect(sluiced.conninfo(kDatabase));
  for (const char* sql :
       {"create temp table t (n int)", "listen x", "select pg_advisory_lock(1)", "prepare q as select 1",
        "declare c cursor with hold for select 1", "load 'plpgsql'"}) {
    const harness::PgResult refused = harness::exec(client, sql);
    EXPECT_EQ(ctltest::sqlstate(refused.get()), "0A000") << sql;
  }
  harness::exec_ok(client,
                   "begin; create temp table t (n int) on commit drop; insert into t values (1); commit");
  EXPECT_EQ(scalar(client, "select pg_try_advisory_xact_lock(1)"), "t");
  harness::exec_ok(client,
                   "create or replace function sneaky() returns void language sql as "
                   "'select pg_advisory_lock(5)'");
  harness::exec_ok(client, "do $$ begin perform sneaky(); end $$");
  EXPECT_TRUE(ctltest::await_closed_while_idle(client)) << "the hidden lock ended the session";
  EXPECT_EQ(leftovers(sluiced), kNothingLeft);
}

}  // namespace
