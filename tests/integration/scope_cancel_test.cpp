// Cancel forwarding (DESIGN §1, issue 4): a client's CancelRequest, carrying the BackendKeyData
// sluiced gave it, cancels the query of the server serving that client at that moment — and a
// forged, foreign or stale key cancels nothing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::PgConn;
using harness::PgResult;
using harness::scalar;
using harness::wait_until;
using scope_test::count_of;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kDatabase = "scope_cancel";
constexpr std::uint32_t kCancelRequestCode = 80877102;

// Sends one 16-byte CancelRequest on a fresh connection to `socket_path`, as libpq's PQcancel does,
// and waits for sluiced to close that connection (it has handled the request by then).
void send_raw_cancel(const std::string& socket_path, std::uint32_t process_id, std::uint32_t secret) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  std::array<std::uint32_t, 4> packet = {htonl(16), htonl(kCancelRequestCode), htonl(process_id),
                                         htonl(secret)};
  ASSERT_EQ(write(fd, packet.data(), sizeof packet), static_cast<ssize_t>(sizeof packet));
  // PostgreSQL (and sluiced) answer nothing: they close the connection.
  bool closed = false;
  const auto deadline = Clock::now() + seconds(5);
  while (!closed && Clock::now() < deadline) {
    pollfd wake{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&wake, 1, 100) <= 0) continue;
    char byte = 0;
    const ssize_t n = read(fd, &byte, 1);
    closed = n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN);
  }
  close(fd);
  EXPECT_TRUE(closed) << "sluiced did not close the cancel connection";
}

// In pipeline mode, each statement with its own Sync, as one write.
bool send_pipeline(const PgConn& conn, const std::vector<std::string>& statements) {
  if (PQenterPipelineMode(conn.get()) != 1) return false;
  for (const auto& statement : statements) {
    if (PQsendQueryParams(conn.get(), statement.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1 ||
        PQpipelineSync(conn.get()) != 1)
      return false;
  }
  return true;
}

class ScopeCancelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }
  void SetUp() override { observer_ = scope_test::direct(kDatabase); }

  // Waits until a backend of the database runs `fragment`; its pid, or 0.
  int wait_running(const std::string& fragment) {
    int pid = 0;
    std::vector<scope_test::Backend> seen;
    wait_until(
        [&] {
          seen = scope_test::client_backends(observer_, kDatabase);
          for (const auto& b : seen) {
            if (b.state == "active" && b.query.find(fragment) != std::string::npos) pid = b.pid;
          }
          return pid != 0;
        },
        seconds(10));
    EXPECT_NE(pid, 0) << "nobody runs " << fragment << ":" << scope_test::describe(seen);
    return pid;
  }

  PgConn observer_;
};

// The first result of the query in flight on `conn`, then the rest consumed.
struct Outcome {
  ExecStatusType status = PGRES_FATAL_ERROR;
  std::string sqlstate;
  std::string message;
  milliseconds took{};
};

Outcome finish_query(PGconn* conn, Clock::time_point started) {
  Outcome outcome;
  PGresult* first = PQgetResult(conn);
  outcome.took = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
  if (first == nullptr) {
    outcome.message = PQerrorMessage(conn);
    return outcome;
  }
  outcome.status = PQresultStatus(first);
  if (const char* state = PQresultErrorField(first, PG_DIAG_SQLSTATE)) outcome.sqlstate = state;
  outcome.message = PQresultErrorMessage(first);
  PQclear(first);
  while (PGresult* rest = PQgetResult(conn)) PQclear(rest);
  return outcome;
}

TEST_F(ScopeCancelTest, PQcancelThroughSluicedStopsTheRunningQuery) {
  // One server: after the cancel the client's next statements find the same one (with two, the
  // other may serve them while the cancel's delivery is still being confirmed).
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  const Clock::time_point started = Clock::now();
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT pg_sleep(30)"), 1) << PQerrorMessage(conn.get());
  const int server_pid = wait_running("pg_sleep(30)");
  ASSERT_NE(server_pid, 0);

  // From another thread, as a driver's cancel (or psql's Ctrl-C) does.
  bool sent = false;
  std::string cancel_error;
  std::thread canceller([&] {
    PGcancel* cancel = PQgetCancel(conn.get());
    std::array<char, 256> error{};
    sent = cancel != nullptr && PQcancel(cancel, error.data(), static_cast<int>(error.size())) == 1;
    cancel_error = error.data();
    if (cancel != nullptr) PQfreeCancel(cancel);
  });
  const Outcome outcome = finish_query(conn.get(), started);
  canceller.join();

  EXPECT_TRUE(sent) << "PQcancel failed: " << cancel_error;
  EXPECT_EQ(outcome.status, PGRES_FATAL_ERROR) << outcome.message;
  EXPECT_EQ(outcome.sqlstate, "57014") << outcome.message;
  EXPECT_LT(outcome.took, seconds(5)) << "the cancel did not stop pg_sleep(30) promptly";
  EXPECT_NE(sluiced.log().find("cancel request forwarded"), std::string::npos);

  // The connection (and its server) go on working.
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
  EXPECT_EQ(scalar(conn, "SELECT pg_backend_pid()"), std::to_string(server_pid));
}

TEST_F(ScopeCancelTest, PQcancelInsideATransactionLeavesItAbortedAndUsable) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  harness::exec_ok(conn, "BEGIN");
  const Clock::time_point started = Clock::now();
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT pg_sleep(30)"), 1);
  ASSERT_NE(wait_running("pg_sleep(30)"), 0);
  PGcancel* cancel = PQgetCancel(conn.get());
  std::array<char, 256> error{};
  EXPECT_EQ(PQcancel(cancel, error.data(), static_cast<int>(error.size())), 1) << error.data();
  PQfreeCancel(cancel);
  const Outcome outcome = finish_query(conn.get(), started);
  EXPECT_EQ(outcome.sqlstate, "57014") << outcome.message;
  EXPECT_LT(outcome.took, seconds(5));
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INERROR);
  harness::exec_ok(conn, "ROLLBACK");
  EXPECT_EQ(scalar(conn, "SELECT 2"), "2");
}

TEST_F(ScopeCancelTest, ForgedKeysCancelNothing) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 2, .overrides = scope_test::debug_overrides()});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  // The process id sluiced gave this client; its secret is not exposed by libpq, and a guess
  // matches it with probability 2^-32.
  const auto key_pid = static_cast<std::uint32_t>(PQbackendPID(conn.get()));
  const Clock::time_point started = Clock::now();
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT pg_sleep(2)"), 1);
  const int server_pid = wait_running("pg_sleep(2)");
  ASSERT_NE(server_pid, 0);

  const std::string before = sluiced.log();
  send_raw_cancel(sluiced.socket_path(), key_pid, 0x5eed1234U);          // right pid, wrong secret
  send_raw_cancel(sluiced.socket_path(), key_pid, 0);                    // right pid, another wrong secret
  send_raw_cancel(sluiced.socket_path(), key_pid ^ 0x40U, 0x5eed1234U);  // wrong pid
  send_raw_cancel(sluiced.socket_path(), static_cast<std::uint32_t>(server_pid),
                  0x5eed1234U);  // the server's pid
  const auto ignored = [&] {
    return count_of(sluiced.log(), "cancel request with an unknown key ignored") -
           count_of(before, "cancel request with an unknown key ignored");
  };
  // The log is written by its own thread: the records follow the handling by a moment.
  EXPECT_TRUE(wait_until([&] { return ignored() >= 4U; })) << "every forged key should be logged as ignored";
  EXPECT_EQ(ignored(), 4U);
  EXPECT_EQ(count_of(sluiced.log(), "cancel request forwarded"), 0U);

  const Outcome outcome = finish_query(conn.get(), started);
  EXPECT_EQ(outcome.status, PGRES_TUPLES_OK)
      << "a forged key cancelled the query: " << outcome.sqlstate << " " << outcome.message;
  EXPECT_GE(outcome.took, milliseconds(1900)) << "pg_sleep(2) ended early";
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
}

// In transaction mode a client between transactions holds no server: its key must not reach the
// server that now serves another client, and once it has left its key is worthless.
TEST_F(ScopeCancelTest, KeyOfAClientWithoutServerOrGoneCancelsNothing) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  PgConn idle_client = harness::connect(sluiced.conninfo(kDatabase));
  const std::string shared_pid = scalar(idle_client, "SELECT pg_backend_pid()");
  PGcancel* idle_key = PQgetCancel(idle_client.get());
  ASSERT_NE(idle_key, nullptr);
  const PgConn busy = harness::connect(sluiced.conninfo(kDatabase));
  std::array<char, 256> error{};

  // 1. The key of a live client that holds no server right now.
  Clock::time_point started = Clock::now();
  ASSERT_EQ(PQsendQuery(busy.get(), "SELECT pg_backend_pid(), pg_sleep(2)"), 1);
  ASSERT_EQ(std::to_string(wait_running("pg_sleep(2)")), shared_pid) << "one server: both use it";
  EXPECT_EQ(PQcancel(idle_key, error.data(), static_cast<int>(error.size())), 1) << error.data();
  Outcome outcome = finish_query(busy.get(), started);
  EXPECT_EQ(outcome.status, PGRES_TUPLES_OK)
      << "another client's key cancelled the query: " << outcome.message;
  EXPECT_GE(outcome.took, milliseconds(1900));

  // 2. The key of a client that has left.
  idle_client.reset();
  ASSERT_TRUE(wait_until([&] {
    return sluiced.log().find("closing because: client terminated") != std::string::npos;
  })) << "sluiced did not see the first client leave";
  started = Clock::now();
  ASSERT_EQ(PQsendQuery(busy.get(), "SELECT pg_sleep(2)"), 1);
  ASSERT_NE(wait_running("pg_sleep(2)"), 0);
  EXPECT_EQ(PQcancel(idle_key, error.data(), static_cast<int>(error.size())), 1) << error.data();
  // Logged once the main loop has looked for the key (a live upgrade's old process may own it).
  EXPECT_TRUE(wait_until(
      [&] { return sluiced.log().find("cancel request with an unknown key ignored") != std::string::npos; }));
  outcome = finish_query(busy.get(), started);
  EXPECT_EQ(outcome.status, PGRES_TUPLES_OK) << "a stale key cancelled the query: " << outcome.message;
  EXPECT_GE(outcome.took, milliseconds(1900));
  PQfreeCancel(idle_key);
}

// Waits until sluiced counts one client waiting for a server.
bool one_client_waits(const harness::Sluiced& sluiced) {
  return wait_until([&] { return ctltest::status(sluiced.control_socket())["clients"]["waiting"] == 1; });
}

// PQcancel on `conn`, as a driver's cancel does: "" once sent, else libpq's error.
std::string cancel_with_libpq(const PgConn& conn) {
  PGcancel* cancel = PQgetCancel(conn.get());
  std::array<char, 256> error{};
  const bool sent = cancel != nullptr && PQcancel(cancel, error.data(), static_cast<int>(error.size())) == 1;
  if (cancel != nullptr) PQfreeCancel(cancel);
  return sent ? "" : std::string("PQcancel failed: ") + error.data();
}

// A client waiting for a server (the pool is busy) cancels its statement: directly, that
// statement would be running and would stop with 57014; through sluiced it has not reached a
// server, so it is answered so at once, and the client leaves the queue and goes on.
TEST_F(ScopeCancelTest, PQcancelOfAStatementWaitingForAServerAnswersItAtOnce) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  const PgConn holder = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn waiter = harness::connect(sluiced.conninfo(kDatabase));
  harness::exec_ok(holder, "BEGIN");
  harness::exec_ok(holder, "SELECT 1");  // the one server is the holder's until it commits
  const Clock::time_point started = Clock::now();
  ASSERT_EQ(PQsendQuery(waiter.get(), "SELECT pg_sleep(30)"), 1);
  ASSERT_TRUE(one_client_waits(sluiced)) << ctltest::status(sluiced.control_socket()).dump();

  EXPECT_EQ(cancel_with_libpq(waiter), "");
  const Outcome outcome = finish_query(waiter.get(), started);
  EXPECT_EQ(outcome.status, PGRES_FATAL_ERROR) << outcome.message;
  EXPECT_EQ(outcome.sqlstate, "57014") << outcome.message;
  EXPECT_NE(outcome.message.find("canceling statement due to user request"), std::string::npos)
      << outcome.message;
  EXPECT_LT(outcome.took, seconds(5)) << "the waiting statement was not answered while the pool stayed busy";
  EXPECT_EQ(PQtransactionStatus(waiter.get()), PQTRANS_IDLE);
  EXPECT_EQ(ctltest::status(sluiced.control_socket())["clients"]["waiting"], 0) << "it left the queue";

  // Nothing of it ran, and both go on: the waiter gets the server once the holder commits.
  EXPECT_TRUE(wait_until([&] {
    return sluiced.log().find("answered without a server") != std::string::npos;
  })) << sluiced.log();
  const auto backends = scope_test::client_backends(observer_, kDatabase);
  for (const auto& backend : backends)
    EXPECT_EQ(backend.query.find("pg_sleep(30)"), std::string::npos) << scope_test::describe(backends);
  harness::exec_ok(holder, "COMMIT");
  EXPECT_EQ(scalar(waiter, "SELECT 3"), "3");
  EXPECT_EQ(scalar(holder, "SELECT 4"), "4");
}

// The outcomes of a two-statement pipeline (one Sync each) sent while the pool's one server is
// another client's, cancelled while it waits, and released: the first and second statements'.
struct PipelineOutcomes {
  Outcome first;
  Outcome second;
};

PipelineOutcomes cancel_a_waiting_pipeline(const harness::Sluiced& sluiced, const std::string& first,
                                           const std::string& second) {
  const PgConn holder = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn waiter = harness::connect(sluiced.conninfo(kDatabase));
  harness::exec_ok(holder, "BEGIN");
  harness::exec_ok(holder, "SELECT 1");
  EXPECT_TRUE(send_pipeline(waiter, {first, second}));
  EXPECT_TRUE(one_client_waits(sluiced)) << ctltest::status(sluiced.control_socket()).dump();
  EXPECT_EQ(cancel_with_libpq(waiter), "");

  const Clock::time_point released = Clock::now();
  harness::exec_ok(holder, "COMMIT");
  PipelineOutcomes outcomes;
  outcomes.first = finish_query(waiter.get(), released);
  PGresult* sync = PQgetResult(waiter.get());
  EXPECT_NE(sync, nullptr);
  EXPECT_EQ(PQresultStatus(sync), PGRES_PIPELINE_SYNC);
  PQclear(sync);
  outcomes.second = finish_query(waiter.get(), released);
  return outcomes;
}

// Two statements in one write, waiting for a server: the cancel follows them to the server once
// one is free, and stops the one running then, as it would have directly.
TEST_F(ScopeCancelTest, PQcancelOfAPipelineWaitingForAServerFollowsItToTheServer) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  const auto [first, second] = cancel_a_waiting_pipeline(sluiced, "SELECT pg_sleep(30)", "SELECT 5");
  EXPECT_EQ(first.sqlstate, "57014") << first.message;
  EXPECT_LT(first.took, seconds(5)) << "pg_sleep(30) was not cancelled once it reached the server";
  EXPECT_EQ(second.status, PGRES_TUPLES_OK)
      << "the statement after the cancelled one runs: " << second.message;
}

// The same with the quick statement first: it is answered before the cancel goes, and the cancel
// still follows the pipeline and stops the slow one, as a cancel sent after both would directly.
// PostgreSQL itself drops a cancel that reaches a backend between two statements (postgres.c
// ignores one that arrives while it reads the next command), and on a loaded machine the backend
// can be off the CPU there for as long as the cancel takes to arrive: directly too, a few runs in
// a hundred then see no cancel. So the scenario gets three attempts; a cancel sluiced drops or
// sends too early (before the backend has read the statements) fails every one.
TEST_F(ScopeCancelTest, PQcancelOfAPipelineWhoseFirstStatementIsQuickStopsTheSlowOne) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1, .overrides = scope_test::debug_overrides()});
  PipelineOutcomes outcomes;
  for (int tries = 1; tries <= 3; ++tries) {
    outcomes = cancel_a_waiting_pipeline(sluiced, "SELECT 5", "SELECT pg_sleep(10)");
    EXPECT_EQ(outcomes.first.status, PGRES_TUPLES_OK) << outcomes.first.message;
    if (outcomes.second.sqlstate == "57014" || ::testing::Test::HasFailure()) break;
    std::cerr << "attempt " << tries << ": pg_sleep(10) was not cancelled (" << outcomes.second.took.count()
              << " ms)\n";
  }
  EXPECT_EQ(outcomes.second.sqlstate, "57014") << outcomes.second.message;
  EXPECT_LT(outcomes.second.took, seconds(5))
      << "pg_sleep(10) was not cancelled: the held cancel was dropped";
}

}  // namespace
