// A drain whose deadline cuts a transaction (DESIGN §3, issue 3 §8): the client is told (57P01),
// the query is cancelled and the transaction rolled back, and the scope is reported as forced —
// by status, by the teardown statistics, and by `sluicectl drain --wait`'s exit code.
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

#ifndef SLUICECTL_PATH
#error "SLUICECTL_PATH must name the sluicectl binary (CMakeLists.txt defines it)"
#endif

namespace {

using harness::PgConn;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kExitOk = 0;
constexpr int kExitDrainForced = 5;

long long ms_since(Clock::time_point then) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - then).count();
}

// The backend's state in pg_stat_activity, or "gone".
std::string backend_state(const PgConn& observer, const std::string& pid) {
  return harness::scalar(
      observer,
      "SELECT coalesce((SELECT coalesce(state, '?') FROM pg_stat_activity WHERE pid = " + pid + "), 'gone')");
}

// A client through sluiced inside `BEGIN; INSERT marker; SELECT pg_sleep(60)`, the sleep running.
struct SleepingTransaction {
  SleepingTransaction(const harness::Sluiced& daemon, const PgConn& observer, const std::string& marker)
      : conn(harness::connect(daemon.conninfo())), notices(std::make_unique<ctltest::NoticeLog>(conn)) {
    harness::exec_ok(conn, "BEGIN");
    harness::exec_ok(conn, "INSERT INTO drain_deadline_markers VALUES ('" + marker + "')");
    backend_pid = harness::scalar(conn, "SELECT pg_backend_pid()");
    if (PQsendQuery(conn.get(), "SELECT pg_sleep(60)") != 1) {
      throw std::runtime_error(std::string("PQsendQuery: ") + PQerrorMessage(conn.get()));
    }
    const bool sleeping = harness::wait_until([&] {
      return harness::scalar(observer, "SELECT count(*) FROM pg_stat_activity WHERE pid = " + backend_pid +
                                           " AND state = 'active' AND query LIKE '%pg_sleep(60)%'") == "1";
    });
    if (!sleeping) throw std::runtime_error("pg_sleep(60) never started on backend " + backend_pid);
  }

  PgConn conn;
  std::unique_ptr<ctltest::NoticeLog> notices;
  std::string backend_pid;
};

class DrainDeadlineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    harness::exec_ok(observer, "SET client_min_messages TO warning");
    harness::exec_ok(observer, "CREATE TABLE IF NOT EXISTS drain_deadline_markers (marker text)");
    harness::exec_ok(observer, "TRUNCATE drain_deadline_markers");
  }

  std::string count_markers(const std::string& marker) {
    return harness::scalar(observer,
                           "SELECT count(*) FROM drain_deadline_markers WHERE marker = '" + marker + "'");
  }

  PgConn observer = harness::connect(harness::postgres().conninfo());
};

TEST_F(DrainDeadlineTest, DeadlineCancelsRollsBackAndCountsTheScopeAsForced) {
  // The configured timeout is long: the deadline below comes from the drain request's timeout_s.
  harness::Sluiced daemon({.overrides = {{"drain", {{"timeout_s", 30}}}}});
  SleepingTransaction sleeper(daemon, observer, "cut-by-deadline");
  const PgConn idle = harness::connect(daemon.conninfo());
  const ctltest::NoticeLog idle_notices(idle);

  const auto drain_at = Clock::now();
  const json ack = ctltest::control(daemon.control_socket(), {{"cmd", "drain"}, {"timeout_s", 3}});
  ASSERT_EQ(ack.value("ok", false), true) << ack.dump();

  // Before the deadline: the idle client is gone already, the sleeper still inside its transaction.
  EXPECT_TRUE(ctltest::await_closed_while_idle(idle, 2s)) << "the idle client was not closed at once";
  EXPECT_TRUE(idle_notices.saw_sqlstate("57P01")) << idle_notices.describe();
  const json before = ctltest::status(daemon.control_socket());
  if (ms_since(drain_at) < 2900) {
    EXPECT_EQ(before.value("state", ""), "draining") << before.dump();
    EXPECT_EQ(before["drain"].value("scopes_remaining", -1), 1) << before.dump();
    EXPECT_EQ(before["drain"].value("forced", -1), 0) << before.dump();
    EXPECT_LE(before["drain"].value("deadline_in_s", 99.0), 3.0) << before.dump();
  }

  // At the deadline the client is told, with 57P01, instead of getting its sleep's result.
  const auto result = ctltest::await_result(sleeper.conn, 7s);
  const long long told_after_ms = ms_since(drain_at);
  ASSERT_TRUE(result.has_value()) << "the client inside pg_sleep(60) heard nothing 7 s after a 3 s drain";
  EXPECT_NE(PQresultStatus(result->get()), PGRES_TUPLES_OK) << "pg_sleep(60) cannot have finished";
  EXPECT_TRUE(ctltest::reported_sqlstate(result->get(), *sleeper.notices, "57P01"))
      << PQresultErrorMessage(result->get()) << " / notices: " << sleeper.notices->describe();
  EXPECT_GE(told_after_ms, 2900) << "cut before the deadline";
  EXPECT_LE(told_after_ms, 6000) << "cut long after the 3 s deadline";

  // The backend stops sleeping (cancelled) and leaves its transaction: idle, or closed after it.
  std::string state;
  EXPECT_TRUE(harness::wait_until(
      [&] {
        state = backend_state(observer, sleeper.backend_pid);
        return state == "idle" || state == "gone";
      },
      5s))
      << "backend " << sleeper.backend_pid << " still '" << state << "' " << ms_since(drain_at)
      << " ms after the drain";
  EXPECT_EQ(count_markers("cut-by-deadline"), "0") << "the cut transaction's insert was committed";

  EXPECT_TRUE(ctltest::wait_for_state(daemon.control_socket(), "drained", 5s));
  const json after = ctltest::status(daemon.control_socket());
  EXPECT_EQ(after["drain"].value("forced", -1), 1) << after.dump();
  EXPECT_EQ(after["clients"].value("total", -1), 0) << after.dump();
  json teardown;
  EXPECT_TRUE(harness::wait_until([&] {
    teardown = ctltest::control(daemon.control_socket(), {{"cmd", "teardown"}});
    return teardown["outcomes"]["cancel"].value("count", 0) >= 1;
  })) << "the forced scope was not released through cancel: "
      << teardown.dump();
  EXPECT_NE(daemon.log().find("forced"), std::string::npos) << "the forced scope is logged";

  // Drained is not stopped: resume serves again, and the sleeper's backend is not handed out mid-transaction.
  const json resumed = ctltest::control(daemon.control_socket(), {{"cmd", "resume"}});
  EXPECT_EQ(resumed.value("state", ""), "running") << resumed.dump();
  const PgConn again = harness::connect(daemon.conninfo());
  EXPECT_EQ(harness::scalar(again, "SELECT count(*) FROM drain_deadline_markers"), "0");
  EXPECT_EQ(harness::scalar(again, "SELECT now() = statement_timestamp()"), "t")
      << "not inside an old transaction";
}

ctltest::ProcessResult drain_and_wait(const harness::Sluiced& daemon, std::chrono::seconds deadline = 1s) {
  return ctltest::run_process({SLUICECTL_PATH, "-s", daemon.control_socket(), "drain", "--timeout",
                               std::to_string(deadline.count()), "--wait"},
                              {.unset_env = {"SLUICE_CONTROL"}, .timeout = deadline + 14s});
}

std::string describe(const ctltest::ProcessResult& result) {
  return "exit " + std::to_string(result.exit_code) + "\n--- stdout ---\n" + result.out + "--- stderr ---\n" +
         result.err;
}

TEST_F(DrainDeadlineTest, SluicectlDrainWaitExitsFiveWhenScopesWereForced) {
  harness::Sluiced daemon;
  SleepingTransaction sleeper(daemon, observer, "cut-by-sluicectl");
  const auto started = Clock::now();
  const auto result = drain_and_wait(daemon);
  EXPECT_EQ(result.exit_code, kExitDrainForced) << describe(result);
  EXPECT_GE(ms_since(started), 900) << "returned before the deadline: " << describe(result);
  EXPECT_NE(result.out.find("drained"), std::string::npos) << describe(result);

  const auto told = ctltest::await_result(sleeper.conn, 3s);
  ASSERT_TRUE(told.has_value()) << "the client was never told";
  EXPECT_TRUE(ctltest::reported_sqlstate(told->get(), *sleeper.notices, "57P01"))
      << PQresultErrorMessage(told->get()) << " / " << sleeper.notices->describe();
  std::string state;
  EXPECT_TRUE(harness::wait_until(
      [&] {
        state = backend_state(observer, sleeper.backend_pid);
        return state == "idle" || state == "gone";
      },
      3s))
      << "backend still " << state;
  EXPECT_EQ(count_markers("cut-by-sluicectl"), "0");
}

TEST_F(DrainDeadlineTest, SluicectlDrainWaitExitsZeroWithoutOpenTransactions) {
  harness::Sluiced daemon;
  const PgConn idle = harness::connect(daemon.conninfo());
  const ctltest::NoticeLog notices(idle);
  EXPECT_EQ(harness::scalar(idle, "SELECT 1"), "1");
  // A deadline far beyond sluicectl's own start-up (close to a second under the sanitizers).
  constexpr auto kDeadline = 10s;
  const auto started = Clock::now();
  const auto result = drain_and_wait(daemon, kDeadline);
  EXPECT_EQ(result.exit_code, kExitOk) << describe(result);
  EXPECT_LT(ms_since(started), 5000) << "nothing to wait for, yet it waited for the deadline: "
                                     << describe(result);
  EXPECT_NE(result.out.find("no scopes were forced"), std::string::npos) << describe(result);
  EXPECT_TRUE(ctltest::await_closed_while_idle(idle));
  EXPECT_TRUE(notices.saw_sqlstate("57P01")) << notices.describe();
  const json after = ctltest::status(daemon.control_socket());
  EXPECT_EQ(after.value("state", ""), "drained") << after.dump();
  EXPECT_EQ(after["drain"].value("forced", -1), 0) << after.dump();
}

}  // namespace
