// Worker loops (`workers` > 1, issue 5 §3): clients spread over the loops, each loop with its share
// of the pool; reports add the workers' shares up; a CancelRequest reaches a client on another
// worker; drain, reload and prepared statements work on every worker.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <array>
#include <atomic>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::PgConn;
using harness::scalar;
using nlohmann::json;
using scope_test::count_of;
using namespace std::chrono_literals;

harness::PoolOptions two_workers(int pool_size) {
  return {.pool_size = pool_size, .overrides = {{"workers", 2}}};
}

json control(const harness::Sluiced& sluiced, const std::string& command) {
  return ctltest::control(sluiced.control_socket(), {{"cmd", command}});
}

// Writes `config`, reloads through the control socket and waits until the log says it applied.
void reload_with(const harness::Sluiced& sluiced, const json& config) {
  const std::size_t applied = count_of(sluiced.log(), "reload applied");
  ctltest::write_text(sluiced.config_path(), config.dump());
  ASSERT_EQ(ctltest::control(sluiced.control_socket(), {{"cmd", "reload"}})["ok"], true);
  ASSERT_TRUE(harness::wait_until([&] { return count_of(sluiced.log(), "reload applied") > applied; }))
      << sluiced.log();
}

// Clients per worker, from the clients report.
std::map<int, int> clients_per_worker(const harness::Sluiced& sluiced) {
  std::map<int, int> counts;
  const json report = control(sluiced, "clients");
  for (const auto& client : report["clients"]) ++counts[client["worker"].get<int>()];
  return counts;
}

TEST(WorkersTest, ClientsSpreadOverTheWorkersAndReportsAddUp) {
  harness::Sluiced sluiced(two_workers(4));
  std::vector<PgConn> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(harness::connect(sluiced.conninfo()));
    EXPECT_EQ(scalar(clients.back(), "SELECT " + std::to_string(i)), std::to_string(i));
  }
  EXPECT_EQ(clients_per_worker(sluiced), (std::map<int, int>{{0, 3}, {1, 3}}));

  const json status = control(sluiced, "status");
  EXPECT_EQ(status["workers"], 2);
  EXPECT_EQ(status["clients"]["total"], 6);
  EXPECT_EQ(status["clients"]["idle"], 6);
  // Six queries, and on each worker the first login's wait for a server's parameters.
  EXPECT_EQ(status["teardown"]["releases"], 8);

  // One row for the pool: the workers' shares of pool_size add up to the configured size, and
  // each worker opened servers of its own.
  const json pools = control(sluiced, "pools")["pools"];
  ASSERT_EQ(pools.size(), 1U) << pools.dump();
  EXPECT_EQ(pools[0]["pool_size"], 4);
  EXPECT_EQ(pools[0]["clients"]["idle"], 6);
  std::set<int> server_workers;
  std::set<std::uint64_t> server_ids;
  const json servers = control(sluiced, "servers");
  for (const auto& server : servers["servers"]) {
    server_workers.insert(server["worker"].get<int>());
    server_ids.insert(server["id"].get<std::uint64_t>());
  }
  EXPECT_EQ(server_workers, (std::set<int>{0, 1}));
  EXPECT_LE(server_ids.size(), 4U);
  EXPECT_EQ(server_ids.size(), status["servers"]["total"].get<std::size_t>());
  EXPECT_EQ(control(sluiced, "teardown")["outcomes"]["clean"]["count"], 8);
}

TEST(WorkersTest, EachWorkerKeepsToItsShareOfThePool) {
  harness::Sluiced sluiced(two_workers(2));
  // Four clients, two per worker, each holding a transaction open: one server per worker, so
  // one client on each worker waits.
  std::vector<PgConn> clients;
  clients.reserve(4);
  for (int i = 0; i < 4; ++i) clients.push_back(harness::connect(sluiced.conninfo()));
  harness::exec_ok(clients[0], "BEGIN");
  harness::exec_ok(clients[1], "BEGIN");
  ASSERT_EQ(PQsendQuery(clients[2].get(), "SELECT 'third'"), 1);
  ASSERT_EQ(PQsendQuery(clients[3].get(), "SELECT 'fourth'"), 1);
  ASSERT_TRUE(harness::wait_until([&] { return control(sluiced, "status")["clients"]["waiting"] == 2; }))
      << control(sluiced, "status").dump();
  EXPECT_EQ(control(sluiced, "status")["servers"]["total"], 2);
  harness::exec_ok(clients[0], "COMMIT");
  harness::exec_ok(clients[1], "COMMIT");
  for (int i = 2; i < 4; ++i) {
    const auto result = ctltest::await_result(clients[i], 10s);
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(std::string(PQgetvalue(result->get(), 0, 0)), i == 2 ? "third" : "fourth");
  }
}

TEST(WorkersTest, CancelRequestReachesAClientOnTheOtherWorker) {
  harness::Sluiced sluiced(two_workers(2));
  const PgConn conn = harness::connect(sluiced.conninfo());
  // The CancelRequest's own connection goes to the worker with fewer clients: the other one, once
  // the harness's readiness probe has left.
  ASSERT_TRUE(harness::wait_until([&] { return control(sluiced, "status")["clients"]["total"] == 1; }));
  ASSERT_EQ(clients_per_worker(sluiced).size(), 1U);
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT pg_sleep(30)"), 1);
  const PgConn observer = harness::connect(harness::postgres().conninfo());
  ASSERT_TRUE(harness::wait_until([&] {
    return scalar(observer,
                  "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                  "AND state = 'active'") == "1";
  }));
  const auto started = std::chrono::steady_clock::now();
  PGcancel* cancel = PQgetCancel(conn.get());
  std::array<char, 256> error{};
  EXPECT_EQ(PQcancel(cancel, error.data(), static_cast<int>(error.size())), 1) << error.data();
  PQfreeCancel(cancel);
  const harness::PgResult result(PQgetResult(conn.get()));
  ASSERT_NE(result, nullptr);
  EXPECT_STREQ(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  while (PGresult* rest = PQgetResult(conn.get())) PQclear(rest);
  EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
}

TEST(WorkersTest, TransactionsUnderLoadThenSigtermDrainLosesNothing) {
  harness::Sluiced sluiced(two_workers(4));
  const PgConn setup = harness::connect(sluiced.conninfo());
  harness::exec_ok(setup, "DROP TABLE IF EXISTS workers_load; CREATE TABLE workers_load (writer int, n int)");
  constexpr int kWriters = 8;
  constexpr int kRounds = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      try {
        const PgConn conn = harness::connect(sluiced.conninfo());
        for (int n = 0; n < kRounds; ++n) {
          harness::exec_ok(conn, "BEGIN; INSERT INTO workers_load VALUES (" + std::to_string(w) + ", " +
                                     std::to_string(n) + "); COMMIT");
        }
      } catch (const std::exception&) {
        ++failures;
      }
    });
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(scalar(setup, "SELECT count(DISTINCT (writer, n)) FROM workers_load"),
            std::to_string(kWriters * kRounds));
  EXPECT_GE(control(sluiced, "teardown")["outcomes"]["clean"]["count"].get<int>(), kWriters * kRounds);

  // Held open across the SIGTERM: closed at its transaction boundary, the daemon exits 0.
  harness::exec_ok(setup, "BEGIN");
  harness::exec_ok(setup, "INSERT INTO workers_load VALUES (-1, -1)");
  sluiced.send_signal(SIGTERM);
  ASSERT_TRUE(ctltest::wait_for_state(sluiced.control_socket(), "draining"));
  harness::exec_ok(setup, "COMMIT");
  const auto status = sluiced.wait_exit(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  const PgConn direct = harness::connect(harness::postgres().conninfo());
  EXPECT_EQ(scalar(direct, "SELECT count(*) FROM workers_load WHERE writer = -1"), "1");
  harness::exec_ok(direct, "DROP TABLE workers_load");
}

TEST(WorkersTest, DrainDeadlineForcesScopesOnEveryWorker) {
  harness::Sluiced sluiced(two_workers(2));
  const PgConn first = harness::connect(sluiced.conninfo());
  const PgConn second = harness::connect(sluiced.conninfo());
  ASSERT_EQ(clients_per_worker(sluiced), (std::map<int, int>{{0, 1}, {1, 1}}));
  harness::exec_ok(first, "BEGIN");
  harness::exec_ok(second, "BEGIN");
  const json answer = ctltest::control(sluiced.control_socket(), {{"cmd", "drain"}, {"timeout_s", 0.3}});
  EXPECT_EQ(answer["ok"], true) << answer.dump();
  ASSERT_TRUE(ctltest::wait_for_state(sluiced.control_socket(), "drained"));
  const json status = control(sluiced, "status");
  EXPECT_EQ(status["drain"]["forced"], 2) << status.dump();
  // Each worker reported once, with its own forced scope.
  EXPECT_NE(sluiced.log().find("every client has left (2 scopes forced at the deadline)"), std::string::npos)
      << sluiced.log();
  EXPECT_EQ(status["clients"]["total"], 0);
  EXPECT_EQ(PQstatus(first.get()), CONNECTION_OK);  // libpq learns of the close on its next use
  EXPECT_NE(PQresultStatus(harness::exec(first, "SELECT 1").get()), PGRES_TUPLES_OK);
  // Newcomers are refused while drained; resume lets them in again on either worker.
  EXPECT_NE(PQstatus(harness::try_connect(sluiced.conninfo()).get()), CONNECTION_OK);
  EXPECT_EQ(ctltest::control(sluiced.control_socket(), {{"cmd", "resume"}})["state"], "running");
  const PgConn later = harness::connect(sluiced.conninfo());
  EXPECT_EQ(scalar(later, "SELECT 3"), "3");
}

TEST(WorkersTest, PreparedStatementsAndReloadOnEveryWorker) {
  harness::Sluiced sluiced(two_workers(2));
  std::vector<PgConn> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(harness::connect(sluiced.conninfo()));
    const harness::PgResult prepared(
        PQprepare(clients.back().get(), "plus", "SELECT $1::int + 1", 1, nullptr));
    ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQerrorMessage(clients.back().get());
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) {
      const std::string value = std::to_string(i * 10 + round);
      const char* params[] = {value.c_str()};
      const harness::PgResult result(
          PQexecPrepared(clients[i].get(), "plus", 1, params, nullptr, nullptr, 0));
      ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQerrorMessage(clients[i].get());
      EXPECT_EQ(std::string(PQgetvalue(result.get(), 0, 0)), std::to_string(i * 10 + round + 1));
    }
  }
  EXPECT_EQ(control(sluiced, "pools")["pools"][0]["prepared_statements"], 1);

  // A reload reaches both workers: pool_size 2 → 6 shows as 6 in the pools report; `workers` stays.
  const json original = json::parse(ctltest::read_text(sluiced.config_path()));
  json config = original;
  config["databases"]["postgres"]["pool_size"] = 6;
  config["workers"] = 3;
  reload_with(sluiced, config);
  EXPECT_EQ(control(sluiced, "status")["reload"]["last"]["ok"], true);
  EXPECT_EQ(control(sluiced, "pools")["pools"][0]["pool_size"], 6);
  EXPECT_EQ(control(sluiced, "status")["workers"], 2);
  EXPECT_NE(sluiced.log().find("workers changes only on restart"), std::string::npos);

  // The database removed (its pools stay for the clients still in it), then back with new settings.
  config.erase("databases");
  config["databases"] = json::object();
  reload_with(sluiced, config);
  reload_with(sluiced, original);
  EXPECT_EQ(control(sluiced, "pools")["pools"][0]["pool_size"], 2);
  EXPECT_EQ(scalar(clients[0], "SELECT 'still here'"), "still here");
}

}  // namespace
