// A libpq client SIGKILLed at each point of its scope (DESIGN §1): between transactions, inside a
// transaction, inside a running query, mid-COPY, mid-result-stream. With one server in the pool:
// the outcome sluiced logs matches the server's state, the same backend serves the next client,
// the backend is idle (not running the abandoned query) at once, and no abandoned write commits.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::exec_ok;
using harness::scalar;
using harness::wait_until;
using scope_test::Backend;
using scope_test::Child;
using scope_test::child_connect;
using scope_test::child_exec_ok;
using scope_test::child_scalar;
using scope_test::ChildPipe;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kDatabase = "scope_killed";
// "Idle within a second": polled with some slack for a loaded machine.
constexpr milliseconds kIdleBound{2000};

struct Scenario {
  std::string pool_mode = "transaction";
  // Runs in the child on its connection through sluiced; must say "pid <backend pid>" and then
  // "ready" once the point to be killed at is reached.
  std::function<void(PGconn*, const ChildPipe&)> body;
  // The backend (seen directly on PostgreSQL) is at the point to kill the client.
  std::function<bool(const Backend&)> at_kill_point;
  std::string abandoned_query;  // a fragment of the query left behind; "" when none
  std::string outcome;          // expected scope outcome; "" when the client held no scope
};

class ScopeClientKilledTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }

  void SetUp() override {
    observer_ = scope_test::direct(kDatabase);
    exec_ok(observer_, "DROP TABLE IF EXISTS killed_marker; CREATE TABLE killed_marker (tag text NOT NULL)");
  }

  void run(const Scenario& scenario) {
    harness::Sluiced sluiced({.dbname = kDatabase,
                              .pool_size = 1,
                              .pool_mode = scenario.pool_mode,
                              .overrides = scope_test::debug_overrides()});
    const std::string conninfo = sluiced.conninfo(kDatabase);

    Child child([&](const ChildPipe& out) {
      PGconn* conn = child_connect(conninfo);
      scenario.body(conn, out);
    });
    const int pid = std::stoi(child.expect("pid "));
    child.expect("ready");

    std::optional<Backend> seen;
    ASSERT_TRUE(wait_until(
        [&] {
          seen = scope_test::backend(observer_, pid);
          return seen && scenario.at_kill_point(*seen);
        },
        seconds(10)))
        << "backend never reached the kill point: " << scope_test::describe(seen);

    const std::size_t mark = sluiced.log().size();
    const auto killed_at = std::chrono::steady_clock::now();
    child.kill();
    // The scope ends the kill caused. sluiced logs the end of the child's last completed
    // transaction just after forwarding its reply, so that line may still land after the mark.
    const auto ends_after_kill = [&] {
      std::vector<scope_test::ScopeEnd> ends;
      for (auto& end : scope_test::scope_ends(sluiced.log(), mark)) {
        if (end.reason != "transaction complete" && end.reason != "login parameters fetched")
          ends.push_back(end);
      }
      return ends;
    };

    // The outcome, as sluiced logs it.
    std::vector<scope_test::ScopeEnd> ends;
    if (scenario.outcome.empty()) {
      // No scope was held: sluiced notes the client gone, and no scope ends.
      ASSERT_TRUE(
          wait_until([&] { return sluiced.log().find("closing because: client", mark) != std::string::npos; },
                     kIdleBound))
          << "sluiced did not notice the client go";
      ends = ends_after_kill();
      EXPECT_TRUE(ends.empty()) << "a client between transactions holds no scope, yet:"
                                << scope_test::describe(ends);
    } else {
      ASSERT_TRUE(wait_until(
          [&] {
            ends = ends_after_kill();
            return !ends.empty();
          },
          kIdleBound))
          << "no scope end logged after the kill";
      ASSERT_EQ(ends.size(), 1U) << scope_test::describe(ends);
      EXPECT_EQ(ends.front().outcome, scenario.outcome) << scope_test::describe(ends);
      EXPECT_LT(ends.front().micros, 1'000'000U)
          << "teardown took over a second: " << scope_test::describe(ends);
      std::cout << "[ scope    ] " << scenario.outcome << " teardown in " << ends.front().micros << " us ("
                << ends.front().reason << ")\n";
    }

    // The backend is idle, and not in (or running) what the client left behind.
    ASSERT_TRUE(wait_until(
        [&] {
          seen = scope_test::backend(observer_, pid);
          return seen && seen->state == "idle" &&
                 (scenario.abandoned_query.empty() ||
                  seen->query.find(scenario.abandoned_query) == std::string::npos);
        },
        kIdleBound))
        << "backend " << pid << " not idle "
        << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - killed_at).count()
        << " ms after the kill: " << scope_test::describe(seen);

    // No abandoned write committed.
    EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM killed_marker WHERE tag LIKE 'abandoned%'"), "0");

    // The same server connection serves the next client, outside any abandoned transaction.
    const harness::PgConn next = harness::connect(conninfo);
    EXPECT_EQ(scalar(next, "SELECT pg_backend_pid()"), std::to_string(pid)) << "server connection not reused";
    EXPECT_EQ(scalar(next, "SELECT count(*) FROM killed_marker WHERE tag LIKE 'abandoned%'"), "0")
        << "the next client sees the abandoned writes: it runs inside the abandoned transaction";
    EXPECT_EQ(scalar(next, "SELECT txid_current_if_assigned() IS NULL"), "t");
    const auto after = scope_test::scope_ends(sluiced.log(), mark);
    for (const auto& end : after) EXPECT_NE(end.outcome, "discard") << scope_test::describe(after);
  }

  harness::PgConn observer_;
};

void say_pid(PGconn* conn, const ChildPipe& out) {
  out.say("pid " + child_scalar(conn, "SELECT pg_backend_pid()"));
}

void send_query(PGconn* conn, const std::string& sql) {
  if (PQsendQuery(conn, sql.c_str()) == 0) throw std::runtime_error(PQerrorMessage(conn));
  while (PQflush(conn) == 1) {
  }
}

TEST_F(ScopeClientKilledTest, BetweenTransactionsInSessionModeEndsClean) {
  run({.pool_mode = "session",
       .body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('committed')");
             say_pid(conn, out);
             out.say("ready");
           },
       .at_kill_point = [](const Backend& b) { return b.state == "idle"; },
       .abandoned_query = "",
       .outcome = "clean"});
  EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM killed_marker WHERE tag = 'committed'"), "1");
}

TEST_F(ScopeClientKilledTest, BetweenTransactionsInTransactionModeHoldsNoScope) {
  run({.pool_mode = "transaction",
       .body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('committed')");
             say_pid(conn, out);
             out.say("ready");
           },
       .at_kill_point = [](const Backend& b) { return b.state == "idle"; },
       .abandoned_query = "",
       .outcome = ""});
  EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM killed_marker WHERE tag = 'committed'"), "1");
}

TEST_F(ScopeClientKilledTest, InsideTransactionEndsRollback) {
  run({.body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "BEGIN");
             say_pid(conn, out);
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('abandoned in transaction')");
             out.say("ready");
           },
       .at_kill_point =
           [](const Backend& b) {
             return b.state == "idle in transaction" && b.query.find("INSERT") != std::string::npos;
           },
       .abandoned_query = "INSERT INTO killed_marker",
       .outcome = "rollback"});
}

TEST_F(ScopeClientKilledTest, InsideFailedTransactionEndsRollback) {
  run({.body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "BEGIN");
             say_pid(conn, out);
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('abandoned before the error')");
             PGresult* failed = PQexec(conn, "SELECT 1/0");
             PQclear(failed);
             out.say("ready");
           },
       .at_kill_point = [](const Backend& b) { return b.state == "idle in transaction (aborted)"; },
       .abandoned_query = "SELECT 1/0",
       .outcome = "rollback"});
}

TEST_F(ScopeClientKilledTest, InsidePgSleepEndsCancel) {
  run({.body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "BEGIN");
             say_pid(conn, out);
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('abandoned before pg_sleep')");
             send_query(conn, "SELECT pg_sleep(30)");
             out.say("ready");
           },
       .at_kill_point =
           [](const Backend& b) {
             return b.state == "active" && b.query.find("pg_sleep(30)") != std::string::npos;
           },
       .abandoned_query = "pg_sleep(30)",
       .outcome = "cancel"});
}

TEST_F(ScopeClientKilledTest, InsidePgSleepInAutocommitEndsCancel) {
  run({.body =
           [](PGconn* conn, const ChildPipe& out) {
             say_pid(conn, out);
             send_query(conn, "SELECT pg_sleep(30)");
             out.say("ready");
           },
       .at_kill_point =
           [](const Backend& b) {
             return b.state == "active" && b.query.find("pg_sleep(30)") != std::string::npos;
           },
       // The cancelled statement ends the implicit transaction: nothing runs after it, so
       // pg_stat_activity keeps showing its text; "idle" within the bound is what proves it cancelled.
       .abandoned_query = "",
       .outcome = "cancel"});
}

TEST_F(ScopeClientKilledTest, MidCopyFromStdinEndsCancel) {
  run({.body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "BEGIN");
             say_pid(conn, out);
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('abandoned before COPY')");
             PGresult* copy = PQexec(conn, "COPY killed_marker (tag) FROM STDIN");
             const bool copying = PQresultStatus(copy) == PGRES_COPY_IN;
             const std::string error = PQresultErrorMessage(copy);
             PQclear(copy);
             if (!copying) throw std::runtime_error("COPY did not start: " + error);
             for (int row = 0; row < 100; ++row) {
               const std::string line = "abandoned copy row " + std::to_string(row) + "\n";
               if (PQputCopyData(conn, line.data(), static_cast<int>(line.size())) != 1) {
                 throw std::runtime_error(PQerrorMessage(conn));
               }
             }
             while (PQflush(conn) == 1) {
             }
             out.say("ready");  // no PQputCopyEnd: the COPY stays open
           },
       .at_kill_point =
           [](const Backend& b) {
             return b.state == "active" && b.query.find("COPY killed_marker") != std::string::npos &&
                    b.wait_event == "ClientRead";
           },
       .abandoned_query = "COPY killed_marker",
       .outcome = "cancel"});
}

TEST_F(ScopeClientKilledTest, MidResultStreamEndsCancel) {
  run({.body =
           [](PGconn* conn, const ChildPipe& out) {
             child_exec_ok(conn, "BEGIN");
             say_pid(conn, out);
             child_exec_ok(conn, "INSERT INTO killed_marker VALUES ('abandoned before the stream')");
             // Never read: the stream backs up until the backend blocks writing.
             send_query(conn, "SELECT repeat('x', 1000) FROM generate_series(1, 1000000)");
             out.say("ready");
           },
       .at_kill_point =
           [](const Backend& b) {
             return b.state == "active" && b.query.find("generate_series(1, 1000000)") != std::string::npos &&
                    b.wait_event == "ClientWrite";
           },
       .abandoned_query = "generate_series(1, 1000000)",
       .outcome = "cancel"});
}

}  // namespace
