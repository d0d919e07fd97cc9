// Server connections lost under clients (issue 4): PostgreSQL restarted under load, and one backend
// terminated. The clients concerned get an error (08006, "server connection lost"), sluiced stays
// up, discards the dead servers, and serves later clients once PostgreSQL is back.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::PgConn;
using harness::scalar;
using harness::wait_until;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kDatabase = "scope_restart";
constexpr int kInFlight = 4;
constexpr std::size_t kLoaders = 2;

struct LoadStats {
  int failed = 0;
  milliseconds slowest{};
};

struct QueryOutcome {
  bool ok = false;
  std::string errors;  // every error libpq saw, with the notices that arrived meanwhile
  milliseconds took{};
};

// Runs `sql` on a connection of its own through sluiced (already connected: `conn`).
QueryOutcome run_query(PGconn* conn, const std::string& sql) {
  scope_test::Notices notices;
  notices.install(conn);
  const Clock::time_point started = Clock::now();
  PGresult* result = PQexec(conn, sql.c_str());
  QueryOutcome outcome;
  outcome.took = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
  outcome.ok = PQresultStatus(result) == PGRES_TUPLES_OK || PQresultStatus(result) == PGRES_COMMAND_OK;
  outcome.errors = std::string(PQerrorMessage(conn)) + "; notices:" + notices.describe();
  PQclear(result);
  PQsetNoticeReceiver(
      conn, [](void*, const PGresult*) {}, nullptr);
  return outcome;
}

bool query_succeeds(const std::string& conninfo) {
  const PgConn conn = harness::try_connect(conninfo);
  if (PQstatus(conn.get()) != CONNECTION_OK) return false;
  const harness::PgResult result = harness::exec(conn, "SELECT 1");
  return PQresultStatus(result.get()) == PGRES_TUPLES_OK;
}

class ScopeServerRestartTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }

  // Waits until `count` backends of the database run `fragment`.
  static bool wait_running(const std::string& fragment, int count) {
    const PgConn observer = scope_test::direct(kDatabase);
    std::vector<scope_test::Backend> seen;
    const bool ok = wait_until(
        [&] {
          seen = scope_test::client_backends(observer, kDatabase);
          int running = 0;
          for (const auto& b : seen)
            running += b.state == "active" && b.query.find(fragment) != std::string::npos;
          return running >= count;
        },
        seconds(10));
    EXPECT_TRUE(ok) << "not " << count << " backends running " << fragment << ":"
                    << scope_test::describe(seen);
    return ok;
  }
};

TEST_F(ScopeServerRestartTest, PostgresRestartedUnderLoad) {
  // Declared before sluiced, so destroyed after it: should a client hang, stopping sluiced ends its
  // query before the future is awaited, and its connection is freed after that.
  std::vector<PgConn> busy;
  std::vector<std::future<QueryOutcome>> in_flight;
  harness::Sluiced sluiced(
      {.dbname = kDatabase, .pool_size = kInFlight + 1, .overrides = scope_test::debug_overrides()});
  const std::string conninfo = sluiced.conninfo(kDatabase);

  // Clients between transactions hold no server: the restart should pass them by.
  std::vector<PgConn> idle;
  for (int i = 0; i < 2; ++i) {
    idle.push_back(harness::connect(conninfo));
    EXPECT_EQ(scalar(idle.back(), "SELECT 1"), "1");
  }
  busy.reserve(kInFlight);
  for (int i = 0; i < kInFlight; ++i) busy.push_back(harness::connect(conninfo));
  for (int i = 0; i < kInFlight; ++i) {
    PGconn* conn = busy[static_cast<std::size_t>(i)].get();
    in_flight.push_back(
        std::async(std::launch::async, [conn] { return run_query(conn, "SELECT pg_sleep(20)"); }));
  }
  ASSERT_TRUE(wait_running("pg_sleep(20)", kInFlight));

  // And clients that keep coming, one short transaction per connection, through the restart.
  std::atomic<bool> restarted{false};
  std::atomic<bool> stop{false};
  std::array<std::atomic<int>, kLoaders> succeeded_after{};
  std::vector<std::future<LoadStats>> loaders;
  for (std::size_t i = 0; i < kLoaders; ++i) {
    loaders.push_back(std::async(std::launch::async, [&, i] {
      LoadStats stats;
      while (!stop) {
        const Clock::time_point began = Clock::now();
        const bool ok = query_succeeds(conninfo);
        stats.slowest =
            std::max(stats.slowest, std::chrono::duration_cast<milliseconds>(Clock::now() - began));
        if (!ok) ++stats.failed;
        if (ok && restarted) ++succeeded_after[i];
      }
      return stats;
    }));
  }
  // Stops the loaders on every way out of the test, before their futures are awaited.
  const scope_test::OnExit stop_loaders([&stop] { stop = true; });

  const Clock::time_point restart_began = Clock::now();
  harness::postgres().restart();
  const auto restart_took = std::chrono::duration_cast<milliseconds>(Clock::now() - restart_began);
  restarted = true;

  for (auto& future : in_flight) {
    ASSERT_EQ(future.wait_for(seconds(10)), std::future_status::ready) << "an in-flight client hangs";
    const QueryOutcome outcome = future.get();
    EXPECT_FALSE(outcome.ok) << "a query survived the restart?";
    EXPECT_NE(outcome.errors.find("server connection lost"), std::string::npos)
        << "no 08006 'server connection lost' error: " << outcome.errors;
    EXPECT_LT(outcome.took, restart_took + seconds(5)) << outcome.errors;
  }
  ASSERT_TRUE(sluiced.alive()) << "sluiced died with PostgreSQL";

  // PostgreSQL is back: new clients succeed.
  ASSERT_TRUE(wait_until([&] { return query_succeeds(conninfo); }, seconds(15)))
      << "no client succeeds after the restart";
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(query_succeeds(conninfo));
  EXPECT_TRUE(wait_until(
      [&] { return std::ranges::all_of(succeeded_after, [](const auto& count) { return count > 0; }); },
      seconds(10)))
      << "a loader never succeeded after the restart";
  stop = true;
  for (auto& loader : loaders) {
    ASSERT_EQ(loader.wait_for(seconds(15)), std::future_status::ready) << "a loader hangs";
    const LoadStats stats = loader.get();
    EXPECT_LT(stats.slowest, seconds(10)) << "a client waited that long for an answer";
    std::cout << "[ restart  ] loader: " << stats.failed << " failures during the restart, slowest "
              << stats.slowest.count() << " ms\n";
  }
  // And clients that were between transactions go on as if nothing happened.
  for (const PgConn& conn : idle) {
    const harness::PgResult result = harness::exec(conn, "SELECT 2");
    EXPECT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK)
        << "a client that held no server lost its session: " << PQerrorMessage(conn.get());
  }
  // Every server of before the restart was discarded; the pool stayed within its size.
  const PgConn observer = scope_test::direct(kDatabase);
  EXPECT_LE(scope_test::client_backends(observer, kDatabase).size(), static_cast<std::size_t>(kInFlight + 1));
  EXPECT_TRUE(sluiced.alive());
}

// While PostgreSQL is down, a query needs a server that cannot be opened: the client gets an
// error at once (its connect fails synchronously: the socket file is gone), and sluiced lives on.
// The client waits up to query_wait_timeout_ms for PostgreSQL to come back, then hears why not.
void postgres_down_case(const std::string& query) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 2,
       .overrides = scope_test::debug_overrides({{"pool", {{"query_wait_timeout_ms", 1000}}}})});
  const std::string conninfo = sluiced.conninfo(kDatabase);
  const PgConn early = harness::connect(conninfo);
  EXPECT_EQ(scalar(early, "SELECT 1"), "1");  // sluiced knows the server's parameters from now on
  const PgConn waiting = harness::connect(conninfo);

  struct StartAgain {
    StartAgain() = default;
    StartAgain(const StartAgain&) = delete;
    StartAgain& operator=(const StartAgain&) = delete;
    ~StartAgain() { harness::postgres().start(); }
  } start_again;
  harness::postgres().stop();

  const QueryOutcome outcome = run_query(waiting.get(), query);
  EXPECT_FALSE(outcome.ok);
  EXPECT_NE(outcome.errors.find("could not connect to server"), std::string::npos) << outcome.errors;
  EXPECT_LT(outcome.took, seconds(5));
  // Another client still gets in (login needs no server once the parameters are known).
  const PgConn probe = harness::try_connect(conninfo);
  EXPECT_EQ(PQstatus(probe.get()), CONNECTION_OK) << PQerrorMessage(probe.get());
  ASSERT_TRUE(sluiced.alive()) << "sluiced died when a server could not be opened";

  harness::postgres().start();
  EXPECT_TRUE(wait_until([&] { return query_succeeds(conninfo); }, seconds(10)));
  EXPECT_EQ(scalar(early, "SELECT 3"), "3");
  EXPECT_TRUE(sluiced.alive());
}

TEST_F(ScopeServerRestartTest, PostgresDownFailsQueriesAndSluicedSurvives) { postgres_down_case("SELECT 2"); }

// The same with a query larger than what sluiced reads at once (64 KiB), so that the client's
// first read fills what it holds while waiting for a server.
TEST_F(ScopeServerRestartTest, PostgresDownFailsALargeQueryAndSluicedSurvives) {
  postgres_down_case("SELECT length('" + std::string(200'000, 'x') + "')");
}

TEST_F(ScopeServerRestartTest, TerminatedBackendInsideATransaction) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  const std::string conninfo = sluiced.conninfo(kDatabase);
  const PgConn conn = harness::connect(conninfo);
  harness::exec_ok(conn, "BEGIN");
  const std::string pid = scalar(conn, "SELECT pg_backend_pid()");

  const PgConn observer = scope_test::direct(kDatabase);
  EXPECT_EQ(scalar(observer, "SELECT pg_terminate_backend(" + pid + ")"), "t");
  ASSERT_TRUE(
      wait_until([&] { return !scope_test::backend(observer, std::stoi(pid)).has_value(); }, seconds(5)));
  // sluiced closes the client at once; what it said arrives with the next call.
  const QueryOutcome outcome = run_query(conn.get(), "SELECT 1");
  EXPECT_FALSE(outcome.ok);
  EXPECT_NE(outcome.errors.find("server connection lost"), std::string::npos) << outcome.errors;

  const auto ends = scope_test::scope_ends(sluiced.log());
  ASSERT_FALSE(ends.empty());
  EXPECT_EQ(ends.back().outcome, "discard") << scope_test::describe(ends);

  // A new server serves new clients.
  const PgConn next = harness::connect(conninfo);
  const std::string fresh = scalar(next, "SELECT pg_backend_pid()");
  EXPECT_NE(fresh, pid);
  EXPECT_TRUE(sluiced.alive());
}

TEST_F(ScopeServerRestartTest, TerminatedBackendWhileAQueryRuns) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  const std::string conninfo = sluiced.conninfo(kDatabase);
  const PgConn conn = harness::connect(conninfo);
  const std::string pid = scalar(conn, "SELECT pg_backend_pid()");
  std::future<QueryOutcome> running;  // awaited before conn is freed
  running = std::async(std::launch::async, [&] { return run_query(conn.get(), "SELECT pg_sleep(20)"); });
  ASSERT_TRUE(wait_running("pg_sleep(20)", 1));

  const PgConn observer = scope_test::direct(kDatabase);
  EXPECT_EQ(scalar(observer, "SELECT pg_terminate_backend(" + pid + ")"), "t");
  ASSERT_EQ(running.wait_for(seconds(10)), std::future_status::ready) << "the client hangs";
  const QueryOutcome outcome = running.get();
  EXPECT_FALSE(outcome.ok);
  EXPECT_NE(outcome.errors.find("server connection lost"), std::string::npos) << outcome.errors;
  EXPECT_LT(outcome.took, seconds(5));

  EXPECT_TRUE(wait_until([&] { return query_succeeds(conninfo); }, seconds(5)));
  EXPECT_TRUE(sluiced.alive());
}

}  // namespace
