// The limits PgBouncer users rely on (README "Limits against PgBouncer's names"), each against a
// real PostgreSQL: max_db_connections and max_user_connections (backends counted in
// pg_stat_activity), fairness between users at max_db_connections, min_pool_size,
// reserve_pool_size, query_timeout_ms, transaction_timeout_ms and server_check_query.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::exec_ok;
using harness::PgConn;
using harness::scalar;
using harness::wait_until;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kDatabase = "pool_limits";
constexpr const char* kOtherDatabase = "pool_limits_other";
constexpr const char* kOtherUser = "limits_other_user";
constexpr const char* kThirdUser = "limits_third_user";

milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

// A query sent without waiting for its answer: the test goes on while the client waits for a server.
class PendingQuery {
 public:
  PendingQuery(const PgConn& conn, const std::string& sql) : conn_(conn.get()), sent_(Clock::now()) {
    if (PQsendQuery(conn_, sql.c_str()) != 1) throw std::runtime_error(PQerrorMessage(conn_));
  }
  // True once the whole answer is in (without blocking).
  bool done() {
    if (PQconsumeInput(conn_) != 1) return true;
    return PQisBusy(conn_) == 0;
  }
  // The first result's status and value (or error), the rest consumed; how long it took.
  struct Answer {
    ExecStatusType status = PGRES_FATAL_ERROR;
    std::string value;  // the first column of the first row, or the error's SQLSTATE
    std::string message;
    milliseconds took{};
  };
  Answer take() {
    Answer answer;
    answer.took = since(sent_);
    bool first = true;
    while (PGresult* result = PQgetResult(conn_)) {
      if (first) {
        answer.status = PQresultStatus(result);
        if (answer.status == PGRES_TUPLES_OK && PQntuples(result) > 0)
          answer.value = PQgetvalue(result, 0, 0);
        if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) answer.value = state;
        if (const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY))
          answer.message = message;
        first = false;
      }
      PQclear(result);
    }
    return answer;
  }

 private:
  PGconn* conn_;
  Clock::time_point sent_;
};

// Clients that run `sql` again and again, each on its own connection and thread, until destroyed.
class BusyClients {
 public:
  BusyClients(const std::vector<std::string>& conninfos, const std::string& sql) {
    for (const std::string& conninfo : conninfos) {
      threads_.emplace_back([this, conninfo, sql] {
        const PgConn conn = harness::try_connect(conninfo);
        while (!stop_ && PQstatus(conn.get()) == CONNECTION_OK) {
          harness::PgResult result(PQexec(conn.get(), sql.c_str()));
          ++queries_;
        }
      });
    }
  }
  ~BusyClients() {
    stop_ = true;
    for (auto& thread : threads_) thread.join();
  }
  BusyClients(const BusyClients&) = delete;
  BusyClients& operator=(const BusyClients&) = delete;
  [[nodiscard]] int queries() const { return queries_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::vector<std::thread> threads_;
};

class PoolLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scope_test::ensure_database(kDatabase);
    scope_test::ensure_database(kOtherDatabase);
    const PgConn admin = scope_test::direct();
    for (const char* user : {kOtherUser, kThirdUser}) {
      exec_ok(admin, std::string("DO $$BEGIN CREATE ROLE ") + user +
                         " LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$");
    }
  }
  void SetUp() override { observer_ = scope_test::direct(kDatabase); }

  // `what` over the client backends that meet `condition`, the observer excepted.
  int of_backends(const std::string& what, const std::string& condition) const {
    return std::stoi(
        scalar(observer_, "SELECT " + what +
                              " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> "
                              "pg_backend_pid() AND " +
                              condition));
  }
  // Client backends of `database` (of `user` when given).
  int backends(const std::string& database, const std::string& user = "") const {
    std::string condition = "datname = '" + database + "'";
    if (!user.empty()) condition += " AND usename = '" + user + "'";
    return of_backends("count(*)", condition);
  }
  // The one client backend of `database`.
  int backend_pid(const std::string& database) const {
    return of_backends("pid", "datname = '" + database + "'");
  }
  int user_backends(const std::string& user) const {
    return of_backends("count(*)", "usename = '" + user + "'");
  }

  static json pool_row(const harness::Sluiced& sluiced, const std::string& database,
                       const std::string& user) {
    const json pools = ctltest::control(sluiced.control_socket(), {{"cmd", "pools"}});
    for (const json& pool : pools["pools"]) {
      if (pool.value("database", "") == database && pool.value("user", "") == user) return pool;
    }
    return json::object();
  }

  // `places` (max_db_connections) for `pool_size` servers, and waits of `wait_ms` for one.
  static harness::PoolOptions limited_to(int places, int pool_size, int wait_ms) {
    return {
        .dbname = kDatabase,
        .pool_size = pool_size,
        .overrides = {{"databases",
                       {{kDatabase, {{"max_db_connections", places}, {"query_wait_timeout_ms", wait_ms}}}}}}};
  }
  // Two places for four servers, and waits that outlast any test.
  static harness::PoolOptions two_places() { return limited_to(2, 4, 20000); }

  // Four clients each of the OS user and kOtherUser.
  static std::vector<std::string> two_users_clients(const harness::Sluiced& sluiced) {
    std::vector<std::string> conninfos;
    for (const std::string& user : {scope_test::os_user(), std::string(kOtherUser)})
      conninfos.insert(conninfos.end(), 4, sluiced.conninfo(kDatabase, user));
    return conninfos;
  }

  // How long `user`'s login and first query take (its login needs a server too), as that user.
  static milliseconds first_query_time(const harness::Sluiced& sluiced, const std::string& user) {
    const auto start = Clock::now();
    const PgConn conn = harness::connect(sluiced.conninfo(kDatabase, user));
    EXPECT_EQ(scalar(conn, "SELECT current_user"), user);
    return since(start);
  }

  // Clients of `user` waiting for a server, over its pools of every startup setting.
  static int waiting_clients(const harness::Sluiced& sluiced, const std::string& user) {
    const json pools = ctltest::control(sluiced.control_socket(), {{"cmd", "pools"}});
    int waiting = 0;
    for (const json& pool : pools["pools"]) {
      if (pool.value("user", "") == user)
        waiting += pool.value("clients", json::object()).value("waiting", 0);
    }
    return waiting;
  }

  // The workers that `user`'s clients are on.
  static std::set<int> client_workers(const harness::Sluiced& sluiced, const std::string& user) {
    const json clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
    std::set<int> workers;
    for (const json& client : clients["clients"]) {
      if (client["pool"] == std::string(kDatabase) + "/" + user) workers.insert(client.value("worker", -1));
    }
    return workers;
  }

  // The workers of `user`'s clients that wait for a server to log in (session mode: at login).
  static std::set<int> logging_in(const harness::Sluiced& sluiced, const std::string& user) {
    const json clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
    std::set<int> workers;
    for (const json& client : clients["clients"]) {
      if (client.value("state", "") == "login" && client["pool"] == std::string(kDatabase) + "/" + user)
        workers.insert(client.value("worker", -1));
    }
    return workers;
  }

  PgConn observer_;
};

// ---- max_db_connections, max_user_connections, fairness --------------------------------------

TEST_F(PoolLimitsTest, MaxDbConnectionsCapsEveryUsersServersAndMovesAPlaceToTheWaitingUser) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 5,
                            .overrides = {{"databases", {{kDatabase, {{"max_db_connections", 2}}}}}}});
  const std::string me = scope_test::os_user();
  // Logged in first: a pool's first login needs a server (for PostgreSQL's ParameterStatus values).
  const PgConn other = harness::connect(sluiced.conninfo(kDatabase, kOtherUser));
  const PgConn first = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn second = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(first, "BEGIN; SELECT 1");
  // The other user's idle server gives its place: nobody of that user waits.
  exec_ok(second, "BEGIN; SELECT 1");
  ASSERT_EQ(backends(kDatabase), 2);
  EXPECT_EQ(backends(kDatabase, kOtherUser), 0);

  // The other user has no place left: it waits (and no third backend appears).
  PendingQuery waiting(other, "SELECT current_user");
  ASSERT_TRUE(wait_until([&] {
    return pool_row(sluiced, kDatabase, kOtherUser)
               .value("limits", json::object())
               .value("limit_reached", 0) > 0;
  })) << pool_row(sluiced, kDatabase, kOtherUser).dump();
  EXPECT_FALSE(waiting.done());
  EXPECT_EQ(backends(kDatabase), 2);

  // A transaction ends: its idle server's place goes to the waiting user, never above the limit.
  exec_ok(first, "COMMIT");
  int most = 0;
  ASSERT_TRUE(wait_until([&] {
    most = std::max(most, backends(kDatabase));
    return waiting.done();
  })) << "the other user never got the freed place";
  const auto answer = waiting.take();
  EXPECT_EQ(answer.status, PGRES_TUPLES_OK) << answer.message;
  EXPECT_EQ(answer.value, kOtherUser);
  EXPECT_LE(most, 2);
  EXPECT_LE(backends(kDatabase), 2);
  EXPECT_EQ(backends(kDatabase, kOtherUser), 1);
  EXPECT_GE(pool_row(sluiced, kDatabase, me).value("limits", json::object()).value("places_given_back", 0),
            1);
  EXPECT_GE(
      pool_row(sluiced, kDatabase, kOtherUser).value("limits", json::object()).value("places_given_back", 0),
      1);
  exec_ok(second, "COMMIT");
}

// A backend held still (SIGSTOP) until released: PostgreSQL goes on counting it after its client's
// goodbye, as it counts any backend that has not yet exited.
class StoppedBackend {
 public:
  explicit StoppedBackend(int pid) : pid_(pid) {
    if (::kill(pid_, SIGSTOP) != 0) throw std::runtime_error("cannot stop backend " + std::to_string(pid_));
  }
  ~StoppedBackend() { resume(); }
  StoppedBackend(const StoppedBackend&) = delete;
  StoppedBackend& operator=(const StoppedBackend&) = delete;
  void resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
    pid_ = 0;
  }

 private:
  int pid_;
};

// A login and its first query on a thread of their own: the test goes on while the client waits.
class PendingLogin {
 public:
  explicit PendingLogin(const std::string& conninfo)
      : thread_([this, conninfo] {
          // Caught: an exception leaving the thread would end the test binary with a backend stopped.
          try {
            const PgConn conn = harness::try_connect(conninfo);
            if (PQstatus(conn.get()) == CONNECTION_OK) user_ = scalar(conn, "SELECT current_user");
          } catch (const std::exception& error) {
            user_ = std::string("failed: ") + error.what();
          }
          done_ = true;
        }) {}
  ~PendingLogin() { thread_.join(); }
  PendingLogin(const PendingLogin&) = delete;
  PendingLogin& operator=(const PendingLogin&) = delete;
  [[nodiscard]] bool done() const { return done_; }
  [[nodiscard]] std::string user() const { return done_ ? user_ : std::string(); }

 private:
  std::string user_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// With max_db_connections at 1, the other user's login needs the place of this user's idle server.
// That server is closed at once, but its backend (stopped here) is still PostgreSQL's: the place
// moves only when the backend has gone, so PostgreSQL never counts two.
TEST_F(PoolLimitsTest, AClosedServersPlaceMovesOnlyOnceItsBackendHasGone) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 2,
                            .overrides = {{"databases", {{kDatabase, {{"max_db_connections", 1}}}}}}});
  const std::string me = scope_test::os_user();
  const PgConn mine = harness::connect(sluiced.conninfo(kDatabase));
  ASSERT_TRUE(wait_until([&] { return backends(kDatabase) == 1; }));  // an earlier test's have gone
  std::optional<PendingLogin> other;  // declared first: the backend resumes before the login is awaited
  StoppedBackend stopped(backend_pid(kDatabase));

  other.emplace(sluiced.conninfo(kDatabase, kOtherUser));
  const auto my_limits = [&] { return pool_row(sluiced, kDatabase, me).value("limits", json::object()); };
  ASSERT_TRUE(wait_until([&] { return my_limits().value("places_given_back", 0) >= 1; }))
      << "the idle server never gave its place";
  EXPECT_EQ(pool_row(sluiced, kDatabase, me)["servers"].value("departing", -1), 1);
  // The other user's pool tries again at each janitor turn (100 ms): two more tries, no server.
  const auto others_tries = [&] {
    return pool_row(sluiced, kDatabase, kOtherUser).value("limits", json::object()).value("limit_reached", 0);
  };
  // Within 3 s: the place moves anyway 5 s after the close.
  const int tries = others_tries();
  int most = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        most = std::max(most, backends(kDatabase));
        return other->done() || others_tries() >= tries + 2;
      },
      seconds(3)));
  EXPECT_FALSE(other->done()) << "a server was opened beside the backend PostgreSQL still counts";
  EXPECT_EQ(most, 1);
  EXPECT_EQ(pool_row(sluiced, kDatabase, me)["servers"].value("departing", -1), 1);

  stopped.resume();
  ASSERT_TRUE(wait_until([&] {
    most = std::max(most, backends(kDatabase));
    return other->done();
  })) << "the place never moved once the backend had gone";
  EXPECT_EQ(other->user(), kOtherUser);
  EXPECT_EQ(most, 1);
  EXPECT_EQ(pool_row(sluiced, kDatabase, me)["servers"].value("departing", -1), 0);
}

// A backend that does not go (stopped for good here) holds its place only so long: the place moves
// five seconds after the close, said in the log.
TEST_F(PoolLimitsTest, ABackendThatDoesNotGoGivesUpItsPlaceAfterFiveSeconds) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 2,
                            .overrides = {{"databases", {{kDatabase, {{"max_db_connections", 1}}}}}}});
  const PgConn mine = harness::connect(sluiced.conninfo(kDatabase));
  ASSERT_TRUE(wait_until([&] { return backends(kDatabase) == 1; }));  // an earlier test's have gone
  std::optional<PendingLogin> other;  // declared first: the backend resumes before the login is awaited
  StoppedBackend stopped(backend_pid(kDatabase));
  const auto start = Clock::now();
  other.emplace(sluiced.conninfo(kDatabase, kOtherUser));
  ASSERT_TRUE(wait_until([&] { return other->done(); }, seconds(20)));
  EXPECT_EQ(other->user(), kOtherUser);
  EXPECT_GE(since(start), seconds(5));
  EXPECT_NE(sluiced.log().find(") is still there 5 s after its close"), std::string::npos) << sluiced.log();
}

TEST_F(PoolLimitsTest, MaxUserConnectionsCapsAUsersServersAcrossDatabases) {
  json overrides = {
      {"pool", {{"max_user_connections", 1}}},
      {"databases", {{kOtherDatabase, {{"conninfo", harness::postgres().conninfo(kOtherDatabase)}}}}}};
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 3, .overrides = overrides});
  const PgConn here = harness::connect(sluiced.conninfo(kDatabase, kOtherUser));
  const PgConn there = harness::connect(sluiced.conninfo(kOtherDatabase, kOtherUser));
  exec_ok(here, "BEGIN; SELECT 1");
  ASSERT_EQ(user_backends(kOtherUser), 1);

  PendingQuery waiting(there, "SELECT current_database()");
  ASSERT_TRUE(wait_until([&] {
    return pool_row(sluiced, kOtherDatabase, kOtherUser)
               .value("limits", json::object())
               .value("limit_reached", 0) > 0;
  }));
  EXPECT_FALSE(waiting.done());
  EXPECT_EQ(user_backends(kOtherUser), 1);

  exec_ok(here, "COMMIT");
  ASSERT_TRUE(wait_until([&] { return waiting.done(); }))
      << "the user's place never moved to the other database";
  const auto answer = waiting.take();
  EXPECT_EQ(answer.value, kOtherDatabase) << answer.message;
  EXPECT_EQ(user_backends(kOtherUser), 1);
}

// users.<name>.max_user_connections: the user's own limit, over its databases' (none here).
TEST_F(PoolLimitsTest, AUsersOwnLimitCapsItsServers) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 4,
                            .overrides = {{"users", {{kOtherUser, {{"max_user_connections", 1}}}}}}});
  const PgConn first = harness::connect(sluiced.conninfo(kDatabase, kOtherUser));
  const PgConn second = harness::connect(sluiced.conninfo(kDatabase, kOtherUser));
  exec_ok(first, "BEGIN; SELECT 1");
  PendingQuery waiting(second, "SELECT 1");
  ASSERT_TRUE(wait_until([&] {
    return pool_row(sluiced, kDatabase, kOtherUser)
               .value("limits", json::object())
               .value("limit_reached", 0) > 0;
  }));
  EXPECT_FALSE(waiting.done());
  EXPECT_EQ(user_backends(kOtherUser), 1);
  // Another user is not limited by it.
  const PgConn mine = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(mine, "BEGIN; SELECT 1");
  const PgConn mine_too = harness::connect(sluiced.conninfo(kDatabase));
  EXPECT_EQ(scalar(mine_too, "SELECT 1"), "1");
  exec_ok(first, "COMMIT");
  ASSERT_TRUE(wait_until([&] { return waiting.done(); }));
  EXPECT_EQ(waiting.take().value, "1");
  EXPECT_EQ(user_backends(kOtherUser), 1);
  exec_ok(mine, "COMMIT");
}

// Two workers take places from one count: the limit is the daemon's, not each worker's.
TEST_F(PoolLimitsTest, MaxDbConnectionsHoldsAcrossWorkers) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 6,
       .overrides = {{"workers", 2}, {"databases", {{kDatabase, {{"max_db_connections", 2}}}}}}});
  std::vector<PgConn> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(harness::connect(sluiced.conninfo(kDatabase)));
  exec_ok(clients[0], "BEGIN; SELECT 1");
  exec_ok(clients[1], "BEGIN; SELECT 1");
  std::vector<PendingQuery> waiting;
  for (int i = 2; i < 4; ++i) waiting.emplace_back(clients[static_cast<std::size_t>(i)], "SELECT 1");
  ASSERT_TRUE(wait_until([&] {
    return pool_row(sluiced, kDatabase, scope_test::os_user())
               .value("clients", json::object())
               .value("waiting", 0) == 2;
  }));
  EXPECT_EQ(backends(kDatabase), 2);
  exec_ok(clients[0], "COMMIT");
  exec_ok(clients[1], "COMMIT");
  for (auto& query : waiting) {
    ASSERT_TRUE(wait_until([&] { return query.done(); }));
    EXPECT_EQ(query.take().status, PGRES_TUPLES_OK);
  }
  EXPECT_LE(backends(kDatabase), 2);
}

// A limit raised on reload lets the waiting client in without anyone committing; nobody is dropped.
TEST_F(PoolLimitsTest, ReloadAppliesARaisedLimitWithoutDroppingClients) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 4,
                            .overrides = {{"databases", {{kDatabase, {{"max_db_connections", 1}}}}}}});
  const PgConn holder = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn other = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(holder, "BEGIN; SELECT 1");
  PendingQuery waiting(other, "SELECT 2");
  ASSERT_TRUE(wait_until([&] {
    return pool_row(sluiced, kDatabase, scope_test::os_user())
               .value("clients", json::object())
               .value("waiting", 0) == 1;
  }));

  json config = json::parse(ctltest::read_text(sluiced.config_path()));
  config["databases"][kDatabase]["max_db_connections"] = 2;
  ctltest::write_text(sluiced.config_path(), config.dump(2) + "\n");
  ctltest::control(sluiced.control_socket(), {{"cmd", "reload"}});
  ASSERT_TRUE(wait_until([&] { return waiting.done(); })) << "the raised limit was not applied";
  EXPECT_EQ(waiting.take().value, "2");
  EXPECT_EQ(backends(kDatabase), 2);
  exec_ok(holder, "COMMIT");  // the transaction open across the reload carries on
}

// A lowered limit closes servers as they come back idle, never one a transaction runs on, even when
// no other pool waits for the places.
TEST_F(PoolLimitsTest, ReloadAppliesALoweredLimitAsServersComeBackIdle) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 4,
                            .overrides = {{"databases", {{kDatabase, {{"max_db_connections", 3}}}}}}});
  std::vector<PgConn> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(harness::connect(sluiced.conninfo(kDatabase)));
  for (const PgConn& client : clients) exec_ok(client, "BEGIN; SELECT 1");
  ASSERT_EQ(backends(kDatabase), 3);

  json config = json::parse(ctltest::read_text(sluiced.config_path()));
  config["databases"][kDatabase]["max_db_connections"] = 1;
  ctltest::write_text(sluiced.config_path(), config.dump(2) + "\n");
  ctltest::control(sluiced.control_socket(), {{"cmd", "reload"}});
  exec_ok(clients[0], "COMMIT");
  exec_ok(clients[1], "COMMIT");
  EXPECT_TRUE(wait_until([&] { return backends(kDatabase) == 1; })) << backends(kDatabase);
  exec_ok(clients[2], "SELECT 2; COMMIT");  // the transaction open across the reload carries on
  EXPECT_EQ(scalar(clients[0], "SELECT 3"), "3");
  EXPECT_EQ(backends(kDatabase), 1);
}

// Fairness: a heavy user's many waiting clients at max_db_connections cannot keep a light user's
// client behind all of them (without it the light user would wait until the heavy one stops).
TEST_F(PoolLimitsTest, AHeavyUsersQueueDoesNotStarveALightUser) {
  constexpr int kHeavyClients = 16;
  harness::Sluiced sluiced(two_places());
  const BusyClients heavy(std::vector<std::string>(kHeavyClients, sluiced.conninfo(kDatabase)),
                          "SELECT pg_sleep(0.4)");
  const std::string heavy_user = scope_test::os_user();
  ASSERT_TRUE(wait_until([&] {
    return pool_row(sluiced, kDatabase, heavy_user).value("clients", json::object()).value("waiting", 0) >= 8;
  })) << "the heavy user's clients never queued";

  // The heavy queue is about 16 x 0.4 s / 2 servers = 3.2 s long; the light user's query waits for
  // one place to move (a transaction, a janitor turn, a connect), not for that queue: the bound
  // leaves room for a slow machine (the sanitizers) and still fails a wait behind the queue.
  const PgConn light = harness::connect(sluiced.conninfo(kDatabase, kOtherUser));
  milliseconds slowest{};
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    EXPECT_EQ(scalar(light, "SELECT current_user"), kOtherUser);
    slowest = std::max(slowest, since(start));
  }
  EXPECT_LT(slowest, milliseconds(2000)) << "the light user waited behind the heavy user's queue";
  EXPECT_LE(backends(kDatabase), 2);
  // And the heavy user gets both places back once the light one stops waiting.
  const int heavy_before = heavy.queries();
  EXPECT_TRUE(wait_until([&] { return heavy.queries() >= heavy_before + kHeavyClients; }))
      << "the heavy user was starved instead";
  EXPECT_TRUE(wait_until([&] { return backends(kDatabase, heavy_user) == 2; }))
      << backends(kDatabase, heavy_user);
}

// Three users, two places: with more waiting users than places, places take turns (README
// "Fairness between users"), so the user who came last is not shut out while the first two stay busy.
TEST_F(PoolLimitsTest, WithMoreWaitingUsersThanPlacesThePlacesTakeTurns) {
  harness::Sluiced sluiced(limited_to(2, 2, 20000));
  const BusyClients busy(two_users_clients(sluiced), "SELECT pg_sleep(0.02)");
  ASSERT_TRUE(wait_until([&] {
    return backends(kDatabase, scope_test::os_user()) >= 1 && backends(kDatabase, kOtherUser) >= 1;
  })) << "the two busy users never both held a place";

  // Its login needs a server too; both places are held by users whose clients keep waiting.
  EXPECT_LT(first_query_time(sluiced, kThirdUser), milliseconds(3000))
      << "the third user waited for a busy user to stop";
  EXPECT_LE(backends(kDatabase), 2);
}

// Rounded up, the shares of three users at four places are two each: two busy users at their
// shares held all four, and the third waited for as long as they stayed busy (to its
// query_wait_timeout). A pair over the rounded-down share gives back while another waiting pair
// holds less than it.
TEST_F(PoolLimitsTest, AThirdUserGetsInBesideTwoAtTheirRoundedUpShares) {
  harness::Sluiced sluiced(limited_to(4, 4, 6000));
  const BusyClients busy(two_users_clients(sluiced), "SELECT pg_sleep(0.02)");
  ASSERT_TRUE(wait_until([&] {
    return backends(kDatabase, scope_test::os_user()) == 2 && backends(kDatabase, kOtherUser) == 2;
  })) << "the two busy users never held two places each";

  // Its login needs a server too.
  EXPECT_LT(first_query_time(sluiced, kThirdUser), milliseconds(3000))
      << "the third user waited for a busy user to stop";
  EXPECT_LE(backends(kDatabase), 4);
}

// Shares are per user, not per pool: a heavy user whose clients are spread over many pools (each
// application_name is a pool of its own) weighs as one user beside a light one. Counted per pool, the
// light user stood in line behind every one of the heavy user's pools (about 7 s here).
TEST_F(PoolLimitsTest, AUserSpreadOverManyPoolsWeighsAsOneUser) {
  constexpr int kHeavyPools = 12;
  harness::Sluiced sluiced(two_places());
  std::vector<std::string> conninfos;
  for (int i = 0; i < 2 * kHeavyPools; ++i)  // two clients a pool
    conninfos.push_back(sluiced.conninfo(kDatabase) + " application_name=heavy_" +
                        std::to_string(i % kHeavyPools));
  const BusyClients heavy(conninfos, "SELECT pg_sleep(0.25)");
  ASSERT_TRUE(wait_until([&] { return waiting_clients(sluiced, scope_test::os_user()) >= kHeavyPools; }))
      << "the heavy user's clients never queued: "
      << ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}}).dump();

  // The light user's login needs a server too: it waits for one heavy transaction, not for turns.
  EXPECT_LT(first_query_time(sluiced, kOtherUser), milliseconds(3000))
      << "the light user waited for the heavy user's pools' turns";
  EXPECT_LE(backends(kDatabase), 2);
}

// Inside a pair the share is split between its pools, on what the pair can hold: a light user's
// pool on one worker, kept busy by one client, does not shut out the same user's pool on the other
// worker while the heavy user holds the rest of the places. Split on the pair's share instead (2 of
// 3 places, rounded up), the busy pool's one server was its half, the heavy user's two were its
// share, and the second pool waited for as long as both kept busy.
TEST_F(PoolLimitsTest, AUsersPoolOnAnotherWorkerIsNotShutOutByItsOwnBusyPool) {
  harness::PoolOptions options = limited_to(3, 4, 5000);
  options.overrides["workers"] = 2;
  harness::Sluiced sluiced(options);
  const std::string light_conninfo = sluiced.conninfo(kDatabase, kOtherUser);
  // A new client goes to the least busy worker: the busy light client to one, the idle one to the other.
  const BusyClients busy_light({light_conninfo}, "SELECT 1");
  ASSERT_TRUE(wait_until([&] { return busy_light.queries() > 0; }));
  const PgConn light = harness::connect(light_conninfo);
  ASSERT_EQ(client_workers(sluiced, kOtherUser), (std::set<int>{0, 1}));
  const BusyClients heavy(std::vector<std::string>(8, sluiced.conninfo(kDatabase)), "SELECT pg_sleep(0.02)");
  const std::string heavy_user = scope_test::os_user();
  ASSERT_TRUE(wait_until([&] {
    return waiting_clients(sluiced, heavy_user) >= 4 && backends(kDatabase, heavy_user) == 2 &&
           backends(kDatabase, kOtherUser) == 1;
  })) << "the heavy user never held two places beside the busy light client's one: heavy "
      << backends(kDatabase, heavy_user) << " (" << waiting_clients(sluiced, heavy_user)
      << " waiting), light " << backends(kDatabase, kOtherUser);

  // The heavy user's two places are its share: the light user's pools share its one place.
  const auto start = Clock::now();
  EXPECT_EQ(scalar(light, "SELECT current_user"), kOtherUser);
  EXPECT_LT(since(start), milliseconds(2000)) << "the light user's second pool was shut out";
  EXPECT_LE(backends(kDatabase), 3);
}

// At a contended limit a pool begins to wait at nearly every transaction: the log says so once a
// minute, not thousands of times a second (as it did, at the default log_level "info").
TEST_F(PoolLimitsTest, AContendedLimitIsLoggedOnceAMinuteNotAtEveryWait) {
  harness::Sluiced sluiced(two_places());
  const BusyClients heavy(std::vector<std::string>(6, sluiced.conninfo(kDatabase)), "SELECT 1");
  const BusyClients light(std::vector<std::string>(3, sluiced.conninfo(kDatabase, kOtherUser)), "SELECT 1");
  ASSERT_TRUE(wait_until([&] {
    const json limits = pool_row(sluiced, kDatabase, kOtherUser).value("limits", json::object());
    return limits.value("limit_reached", 0) >= 200 && heavy.queries() >= 200;
  })) << "the light user's clients never waited at the limit";

  const std::string log = sluiced.log();
  int lines = 0;
  for (std::size_t at = log.find("reached; its clients wait"); at != std::string::npos;
       at = log.find("reached; its clients wait", at + 1))
    ++lines;
  EXPECT_GE(lines, 1);
  EXPECT_LE(lines, 2) << "one line a pool, at its first wait";
}

// Session mode: a scope is the whole session, so a light user waits for a heavy user's session to
// end; then the place is its own, not the next heavy client's — whichever worker each is on (two
// workers here: the heavy user's clients wait on both). Counted per pool, the heavy user's second
// pool was ahead of the light user in line and took the place.
TEST_F(PoolLimitsTest, InSessionModeTheLightUserGetsThePlaceAHeavySessionGivesUp) {
  harness::PoolOptions options = limited_to(2, 4, 6000);
  options.pool_mode = "session";
  options.overrides["workers"] = 2;
  harness::Sluiced sluiced(options);
  const std::string heavy_conninfo = sluiced.conninfo(kDatabase);
  // Two heavy sessions hold both places, one per worker (a new client goes to the least busy one).
  PgConn holder = harness::connect(heavy_conninfo);
  PgConn other_holder = harness::connect(heavy_conninfo);
  ASSERT_EQ(backends(kDatabase), 2);
  // Two more heavy clients wait, one on each worker (each leaves once in); then the light one.
  PgConn light;
  std::vector<std::thread> logins;
  const scope_test::OnExit join([&] {
    holder.reset();
    other_holder.reset();  // the heavy clients still waiting get in, and their threads end
    for (auto& thread : logins) thread.join();
  });
  for (int i = 0; i < 2; ++i) logins.emplace_back([heavy_conninfo] { harness::try_connect(heavy_conninfo); });
  ASSERT_TRUE(wait_until([&] { return logging_in(sluiced, scope_test::os_user()) == std::set<int>{0, 1}; }));
  logins.emplace_back([&light, conninfo = sluiced.conninfo(kDatabase, kOtherUser)] {
    light = harness::try_connect(conninfo);
  });
  ASSERT_TRUE(wait_until([&] { return logging_in(sluiced, kOtherUser).size() == 1; }));

  // A heavy session ends: its place goes to the light user, who waited last.
  const auto ended = Clock::now();
  holder.reset();
  ASSERT_TRUE(wait_until([&] { return logging_in(sluiced, kOtherUser).empty(); }, seconds(10)));
  logins.back().join();
  logins.pop_back();
  ASSERT_EQ(PQstatus(light.get()), CONNECTION_OK) << PQerrorMessage(light.get());
  EXPECT_LT(since(ended), milliseconds(2000));
  EXPECT_EQ(scalar(light, "SELECT current_user"), kOtherUser);
  EXPECT_EQ(logging_in(sluiced, scope_test::os_user()).size(), 2U) << "a heavy client took the place";
  EXPECT_LE(backends(kDatabase), 2);
}

// ---- min_pool_size, reserve_pool_size ---------------------------------------------------------

TEST_F(PoolLimitsTest, MinPoolSizeOpensServersWithNoClientWithinTheLimits) {
  const std::string me = scope_test::os_user();
  // The conninfo names the user (PgBouncer's forced user): the pool is warmed with no client at all.
  json overrides = {{"databases",
                     {{kDatabase,
                       {{"conninfo", harness::postgres().conninfo(kDatabase, me)},
                        {"min_pool_size", 3},
                        {"server_idle_timeout_s", 1}}}}}};
  {
    harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 5, .overrides = overrides});
    ASSERT_TRUE(wait_until([&] { return backends(kDatabase) == 3; })) << backends(kDatabase);
    // server_idle_timeout_s does not take them below min_pool_size.
    const auto idle_since = Clock::now();
    ASSERT_TRUE(wait_until([&] { return since(idle_since) > milliseconds(1500); }));
    EXPECT_EQ(backends(kDatabase), 3);
  }
  ASSERT_TRUE(wait_until([&] { return backends(kDatabase) == 0; }));
  // Never above max_db_connections.
  overrides["databases"][kDatabase]["max_db_connections"] = 2;
  harness::Sluiced limited({.dbname = kDatabase, .pool_size = 5, .overrides = overrides});
  ASSERT_TRUE(wait_until([&] { return backends(kDatabase) == 2; }));
  const auto settled = Clock::now();
  ASSERT_TRUE(wait_until([&] { return since(settled) > milliseconds(500); }));
  EXPECT_EQ(backends(kDatabase), 2);
}

TEST_F(PoolLimitsTest, ReserveServersOnlyAfterAClientWaitedTheReserveTimeout) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 1,
       .overrides = {
           {"databases", {{kDatabase, {{"reserve_pool_size", 1}, {"reserve_pool_timeout_ms", 700}}}}}}});
  const PgConn holder = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn waiter = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(holder, "BEGIN; SELECT 1");
  PendingQuery waiting(waiter, "SELECT 1");
  const auto before_timeout = Clock::now();
  ASSERT_TRUE(wait_until([&] { return waiting.done() || since(before_timeout) > milliseconds(400); }));
  EXPECT_FALSE(waiting.done()) << "served before reserve_pool_timeout_ms";
  EXPECT_EQ(backends(kDatabase), 1);

  ASSERT_TRUE(wait_until([&] { return waiting.done(); }, seconds(5)));
  const auto answer = waiting.take();
  EXPECT_EQ(answer.value, "1") << answer.message;
  EXPECT_GE(answer.took, milliseconds(650));
  EXPECT_LE(backends(kDatabase), 2);  // the reserve server may already be gone again (below)
  EXPECT_EQ(pool_row(sluiced, kDatabase, scope_test::os_user())
                .value("limits", json::object())
                .value("reserve_servers_opened", 0),
            1);
  // Nobody waits any more: the reserve server goes once idle.
  ASSERT_TRUE(wait_until([&] { return backends(kDatabase) == 1; })) << "the reserve server was kept";
  exec_ok(holder, "COMMIT");
}

// ---- query_timeout_ms, transaction_timeout_ms -------------------------------------------------

TEST_F(PoolLimitsTest, QueryTimeoutCancelsTheQueryAndTheSessionAndServerCarryOn) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 1,
       .overrides = scope_test::debug_overrides({{"pool", {{"query_timeout_ms", 300}}}})});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  const int pid = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));

  auto start = Clock::now();
  const harness::PgResult cancelled = harness::exec(conn, "SELECT pg_sleep(10)");
  EXPECT_LT(since(start), milliseconds(2000));
  ASSERT_EQ(PQresultStatus(cancelled.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(cancelled.get(), PG_DIAG_SQLSTATE), "57014");
  // Worded as PostgreSQL words its own timeouts, naming this one (not "due to user request").
  EXPECT_STREQ(PQresultErrorField(cancelled.get(), PG_DIAG_MESSAGE_PRIMARY),
               "canceling statement due to query timeout");
  EXPECT_STREQ(PQresultErrorField(cancelled.get(), PG_DIAG_MESSAGE_DETAIL),
               "The statement ran longer than sluiced's query_timeout_ms (300 ms).");
  // The session carries on, on the same server, with nothing left running there.
  EXPECT_EQ(scalar(conn, "SELECT pg_backend_pid()"), std::to_string(pid));
  const auto after = scope_test::backend(observer_, pid);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->query.find("pg_sleep"), std::string::npos) << scope_test::describe(after);

  // Inside a transaction: it is failed, as PostgreSQL's statement_timeout leaves it, and rolls back.
  exec_ok(conn, "BEGIN");
  start = Clock::now();
  const harness::PgResult in_transaction = harness::exec(conn, "SELECT pg_sleep(10)");
  EXPECT_STREQ(PQresultErrorField(in_transaction.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_EQ(PQtransactionStatus(conn.get()), PQTRANS_INERROR);
  exec_ok(conn, "ROLLBACK");
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
  EXPECT_EQ(pool_row(sluiced, kDatabase, scope_test::os_user())
                .value("limits", json::object())
                .value("query_timeouts", 0),
            2);
}

// Where sluiced does not read the replies (session mode), it does from the timeout on: the client is
// told the same.
TEST_F(PoolLimitsTest, QueryTimeoutsErrorNamesItInSessionModeToo) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 1,
                            .pool_mode = "session",
                            .overrides = {{"pool", {{"query_timeout_ms", 300}}}}});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(conn, "SELECT 1");
  const harness::PgResult cancelled = harness::exec(conn, "SELECT pg_sleep(10)");
  EXPECT_STREQ(PQresultErrorField(cancelled.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_STREQ(PQresultErrorField(cancelled.get(), PG_DIAG_MESSAGE_PRIMARY),
               "canceling statement due to query timeout");
  // Once that request is answered, a 57014 of the client's own keeps its words.
  const harness::PgResult own =
      harness::exec(conn, "DO $$BEGIN RAISE query_canceled USING MESSAGE = 'mine'; END$$");
  EXPECT_STREQ(PQresultErrorField(own.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_STREQ(PQresultErrorField(own.get(), PG_DIAG_MESSAGE_PRIMARY), "mine");
}

// As PostgreSQL's statement_timeout: a request's time starts when a server runs it, not while the
// client queued for one.
TEST_F(PoolLimitsTest, QueryTimeoutDoesNotCountTheWaitForAServer) {
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .pool_size = 1,
                            .overrides = {{"pool", {{"query_timeout_ms", 600}}},
                                          {"databases", {{kDatabase, {{"query_wait_timeout_ms", 20000}}}}}}});
  const PgConn holder = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn waiter = harness::connect(sluiced.conninfo(kDatabase));
  exec_ok(holder, "BEGIN; SELECT 1");
  PendingQuery waiting(waiter, "SELECT pg_sleep(0.3), 'served'");
  const auto queued = Clock::now();
  ASSERT_TRUE(wait_until([&] { return since(queued) > milliseconds(900); }, seconds(2)));
  exec_ok(holder, "COMMIT");
  ASSERT_TRUE(wait_until([&] { return waiting.done(); }, seconds(5)));
  const auto answer = waiting.take();
  EXPECT_EQ(answer.status, PGRES_TUPLES_OK) << answer.value << " " << answer.message;
  EXPECT_EQ(pool_row(sluiced, kDatabase, scope_test::os_user())
                .value("limits", json::object())
                .value("query_timeouts", 0),
            0);
}

// A pipeline of short transactions (libpq pipeline mode, a Sync after each) runs longer than
// transaction_timeout_ms as a whole: no transaction of it does, so none is ended — as PostgreSQL 17.
TEST_F(PoolLimitsTest, TransactionTimeoutCountsEachTransactionOfAPipeline) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase, .pool_size = 1, .overrides = {{"pool", {{"transaction_timeout_ms", 800}}}}});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  constexpr int kTransactions = 12;  // 12 x 0.1 s: longer than the limit in all
  ASSERT_EQ(PQenterPipelineMode(conn.get()), 1);
  for (int i = 0; i < kTransactions; ++i) {
    ASSERT_EQ(PQsendQueryParams(conn.get(), "SELECT pg_sleep(0.1)", 0, nullptr, nullptr, nullptr, nullptr, 0),
              1);
    ASSERT_EQ(PQpipelineSync(conn.get()), 1);
  }
  int ok = 0;
  int syncs = 0;
  std::string error;
  while (syncs < kTransactions) {
    PGresult* result = PQgetResult(conn.get());
    if (result == nullptr) continue;  // the end of one query's results
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_PIPELINE_SYNC) ++syncs;
    if (status == PGRES_TUPLES_OK) ++ok;
    if (status == PGRES_FATAL_ERROR || status == PGRES_PIPELINE_ABORTED) {
      error = PQresultErrorMessage(result);
      PQclear(result);
      break;
    }
    PQclear(result);
  }
  EXPECT_EQ(ok, kTransactions) << error;
  EXPECT_EQ(pool_row(sluiced, kDatabase, scope_test::os_user())
                .value("limits", json::object())
                .value("transaction_timeouts", 0),
            0);
}

TEST_F(PoolLimitsTest, TransactionTimeoutRollsBackAndClosesTheClientAsPostgresDoes) {
  exec_ok(observer_, "DROP TABLE IF EXISTS limits_marker; CREATE TABLE limits_marker (tag text)");
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 1,
       .overrides = scope_test::debug_overrides({{"pool", {{"transaction_timeout_ms", 600}}}})});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  scope_test::Notices notices;
  notices.install(conn.get());
  const int pid = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  exec_ok(conn, "BEGIN");
  exec_ok(conn, "INSERT INTO limits_marker VALUES ('abandoned by transaction_timeout')");
  // Busy, never idle in the transaction: idle_transaction_timeout would not apply, this does.
  const auto start = Clock::now();
  const harness::PgResult cut = harness::exec(conn, "SELECT pg_sleep(10)");
  EXPECT_LT(since(start), milliseconds(3000));
  EXPECT_NE(PQresultStatus(cut.get()), PGRES_TUPLES_OK);
  ASSERT_TRUE(wait_until([&] { return scope_test::connection_closed(conn.get()); }));
  bool worded = false;
  const std::string error = std::string(PQresultErrorMessage(cut.get())) + PQerrorMessage(conn.get());
  for (const auto& [state, message] : notices.received)
    worded = worded || (state == "25P04" && message == "terminating connection due to transaction timeout");
  worded = worded || error.find("terminating connection due to transaction timeout") != std::string::npos;
  EXPECT_TRUE(worded) << notices.describe() << " / " << error;

  // Rolled back (cancelled, then ROLLBACK), and the same server serves the next client.
  EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM limits_marker"), "0");
  const PgConn next = harness::connect(sluiced.conninfo(kDatabase));
  EXPECT_EQ(scalar(next, "SELECT pg_backend_pid()"), std::to_string(pid));
  EXPECT_EQ(scalar(next, "SELECT count(*) FROM limits_marker"), "0");
  bool ended_by_timeout = false;
  for (const auto& end : scope_test::scope_ends(sluiced.log()))
    ended_by_timeout = ended_by_timeout || (end.outcome == "cancel" && end.reason == "transaction_timeout");
  EXPECT_TRUE(ended_by_timeout) << scope_test::describe(scope_test::scope_ends(sluiced.log()));
  EXPECT_EQ(pool_row(sluiced, kDatabase, scope_test::os_user())
                .value("limits", json::object())
                .value("transaction_timeouts", 0),
            1);
}

// Idle inside its transaction, the client is ended all the same, with a rollback (and without
// idle_transaction_timeout_ms set).
TEST_F(PoolLimitsTest, TransactionTimeoutEndsAnIdleTransactionWithARollback) {
  exec_ok(observer_, "DROP TABLE IF EXISTS limits_idle_marker; CREATE TABLE limits_idle_marker (tag text)");
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 1,
       .overrides = scope_test::debug_overrides({{"pool", {{"transaction_timeout_ms", 500}}}})});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  scope_test::Notices notices;
  notices.install(conn.get());
  const auto start = Clock::now();  // before BEGIN: the timeout counts from it, so no later
  exec_ok(conn, "BEGIN");
  exec_ok(conn, "INSERT INTO limits_idle_marker VALUES ('abandoned')");
  ASSERT_TRUE(wait_until([&] { return scope_test::connection_closed(conn.get()); }, seconds(5)));
  EXPECT_GE(since(start), milliseconds(400));
  EXPECT_TRUE(notices.has("25P04")) << notices.describe();
  EXPECT_EQ(scalar(observer_, "SELECT count(*) FROM limits_idle_marker"), "0");
  bool rolled_back = false;
  for (const auto& end : scope_test::scope_ends(sluiced.log()))
    rolled_back = rolled_back || (end.outcome == "rollback" && end.reason == "transaction_timeout");
  EXPECT_TRUE(rolled_back) << scope_test::describe(scope_test::scope_ends(sluiced.log()));
}

// ---- server_check_query, server_check_delay_s --------------------------------------------------

// A check that fails on the backends named in limits_doomed: a server whose backend is broken
// without PostgreSQL closing its socket (what the check is for) looks the same to sluiced. One
// server, so that the pool's own catalog read on an idle server cannot renew the doomed one's time.
TEST_F(PoolLimitsTest, AFailedServerCheckDiscardsTheServerAndTheClientGetsAGoodOne) {
  exec_ok(observer_, "DROP TABLE IF EXISTS limits_doomed; CREATE TABLE limits_doomed (pid int)");
  harness::Sluiced sluiced(
      {.dbname = kDatabase,
       .pool_size = 1,
       .overrides = {
           {"pool",
            {{"server_check_delay_s", 1},
             {"server_check_query",
              "SELECT 1 / (1 - (SELECT count(*) FROM limits_doomed WHERE pid = pg_backend_pid()))::int"}}}}});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  const int doomed = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  exec_ok(observer_, "INSERT INTO limits_doomed VALUES (" + std::to_string(doomed) + ")");
  const auto idle_since = Clock::now();
  ASSERT_TRUE(wait_until([&] { return since(idle_since) > milliseconds(1200); }));

  const PgConn observer_after = scope_test::direct(kDatabase);
  const std::string served = scalar(conn, "SELECT pg_backend_pid()");
  EXPECT_NE(served, std::to_string(doomed)) << "the server that failed its check was handed out";
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
  ASSERT_TRUE(wait_until([&] { return !scope_test::backend(observer_, doomed).has_value(); }))
      << "the server that failed its check was kept";
  const json limits = pool_row(sluiced, kDatabase, scope_test::os_user())["limits"];
  EXPECT_GE(limits.value("checks_run", 0), 1) << limits.dump();
  EXPECT_EQ(limits.value("checks_failed", 0), 1) << limits.dump();
}

// An empty server_check_query sends an empty Query; a backend terminated while its server was
// idle is never handed to a client.
TEST_F(PoolLimitsTest, ABackendTerminatedWhileIdleNeverReachesTheClient) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase, .pool_size = 1, .overrides = {{"pool", {{"server_check_delay_s", 1}}}}});
  const PgConn conn = harness::connect(sluiced.conninfo(kDatabase));
  const int first = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  exec_ok(observer_, "SELECT pg_terminate_backend(" + std::to_string(first) + ")");
  ASSERT_TRUE(wait_until([&] { return !scope_test::backend(observer_, first).has_value(); }));
  const int second = std::stoi(scalar(conn, "SELECT pg_backend_pid()"));
  EXPECT_NE(second, first);

  const auto idle_since = Clock::now();
  ASSERT_TRUE(wait_until([&] { return since(idle_since) > milliseconds(1200); }));
  EXPECT_EQ(scalar(conn, "SELECT pg_backend_pid()"), std::to_string(second)) << "a good server was not kept";
  const json limits = pool_row(sluiced, kDatabase, scope_test::os_user())["limits"];
  EXPECT_GE(limits.value("checks_run", 0), 1) << limits.dump();
  EXPECT_EQ(limits.value("checks_failed", 0), 0) << limits.dump();
}

}  // namespace
