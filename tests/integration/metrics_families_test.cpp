// /metrics, family by family (issue 17 §1, §5): each value changes as the scenario says, read
// through prometheus_client's strict parser (tests/metrics/parse_metrics.py) on every scrape.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/raw_wire.h"

namespace {

using harness::Metrics;
using harness::PgConn;
using nlohmann::json;
using Labels = std::map<std::string, std::string>;
using namespace std::chrono_literals;

Labels pool_labels() { return {{"database", "postgres"}, {"user", harness::os_user()}}; }

class MetricsFamilies : public ::testing::Test {
 protected:
  Metrics scrape() { return harness::scrape(harness::metrics_socket(sluiced_)); }
  // Waits until the scraped `name` (with `labels`) reaches `at_least`; returns the last scrape.
  Metrics scrape_until(const std::string& name, const Labels& labels, double at_least) {
    Metrics last;
    harness::wait_until([&] {
      last = scrape();
      return last.value_or(name, labels, -1) >= at_least;
    });
    return last;
  }

  // Debug: a failure's log then gives each scope's end and its reason (the restore test below).
  harness::Sluiced sluiced_{harness::metrics_config({.pool_size = 2, .overrides = {{"log_level", "debug"}}})};
};

TEST_F(MetricsFamilies, ATransactionCountsOnceAndEachOfItsQueriesOnce) {
  const PgConn client = harness::connect(sluiced_.conninfo());
  harness::exec_ok(client, "select 1");  // the pool has its servers: their connects are counted
  const Metrics before = scrape();
  harness::exec_ok(client, "begin");
  harness::exec_ok(client, "select pg_sleep(0.02)");
  harness::exec_ok(client, "commit");
  const Metrics after = scrape();
  const Labels pool = pool_labels();
  EXPECT_EQ(after.value("sluice_transaction_duration_seconds_count", pool),
            before.value("sluice_transaction_duration_seconds_count", pool) + 1);
  EXPECT_EQ(after.value("sluice_query_duration_seconds_count", pool),
            before.value("sluice_query_duration_seconds_count", pool) + 3);
  // The client's view: the transaction took at least its 20 ms sleep, and fell in a bucket above it.
  EXPECT_GE(after.value("sluice_transaction_duration_seconds_sum", pool) -
                before.value("sluice_transaction_duration_seconds_sum", pool),
            0.02);
  Labels fast = pool;
  fast["le"] = "0.016777216";  // 2^24 ns: below the sleep
  EXPECT_EQ(after.value("sluice_transaction_duration_seconds_bucket", fast),
            before.value("sluice_transaction_duration_seconds_bucket", fast));
  EXPECT_GT(after.value("sluice_client_received_bytes_total", pool),
            before.value("sluice_client_received_bytes_total", pool));
  EXPECT_GT(after.value("sluice_client_sent_bytes_total", pool),
            before.value("sluice_client_sent_bytes_total", pool));
  EXPECT_GE(after.value("sluice_server_connects_total", {{"result", "ok"}, {"database", "postgres"}}), 1);
  EXPECT_EQ(after.value("sluice_server_connect_duration_seconds_count", pool),
            after.value("sluice_server_connects_total", {{"result", "ok"}, {"database", "postgres"}}));
}

TEST_F(MetricsFamilies, AClientThatLeavesMidTransactionShowsAsARollbackTeardown) {
  const Metrics before = scrape();
  {
    const PgConn client = harness::connect(sluiced_.conninfo());
    harness::exec_ok(client, "begin");
    harness::exec_ok(client, "select 1");
  }  // gone inside its transaction: sluiced rolls back
  const Labels rollback = {{"outcome", "rollback"}};
  const Metrics after = scrape_until("sluice_teardown_duration_seconds_count", rollback,
                                     before.value("sluice_teardown_duration_seconds_count", rollback) + 1);
  EXPECT_EQ(after.value("sluice_teardown_duration_seconds_count", rollback),
            before.value("sluice_teardown_duration_seconds_count", rollback) + 1);
  Labels inf = rollback;
  inf["le"] = "+Inf";
  EXPECT_EQ(after.value("sluice_teardown_duration_seconds_bucket", inf),
            after.value("sluice_teardown_duration_seconds_count", rollback));
  EXPECT_EQ(after.value("sluice_teardown_sla_seconds"), 0.005);
  EXPECT_GE(after.value("sluice_teardown_sla_violations_total", rollback), 0);
}

TEST_F(MetricsFamilies, AnUndefinedTableCountsInClass42AndLoginsByResult) {
  const Metrics before = scrape();
  const PgConn client = harness::connect(sluiced_.conninfo());
  const auto result = harness::exec(client, "select * from no_such_table");
  ASSERT_EQ(PQresultStatus(result.get()), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE), "42P01");
  const PgConn unknown = harness::try_connect(sluiced_.conninfo("no_such_database"));
  ASSERT_NE(PQstatus(unknown.get()), CONNECTION_OK);
  const Metrics after = scrape();
  EXPECT_EQ(after.value_or("sluice_client_errors_total", {{"class", "42"}}, 0),
            before.value_or("sluice_client_errors_total", {{"class", "42"}}, 0) + 1);
  EXPECT_EQ(after.value_or("sluice_client_errors_total", {{"class", "3D"}}, 0),
            before.value_or("sluice_client_errors_total", {{"class", "3D"}}, 0) + 1);
  EXPECT_EQ(after.value("sluice_client_logins_total", {{"result", "ok"}}),
            before.value("sluice_client_logins_total", {{"result", "ok"}}) + 1);
  EXPECT_EQ(after.value("sluice_client_logins_total", {{"result", "unknown_database"}}),
            before.value("sluice_client_logins_total", {{"result", "unknown_database"}}) + 1);
}

// A stream of distinct users (here made-up roles under trust: PostgreSQL refuses each server login)
// leaves nothing behind: each pool is forgotten once unused, and its counters join the database's
// total of departed users (user=""), so that the database's sums never go back.
TEST_F(MetricsFamilies, AStreamOfDistinctUsersLeavesNoSeriesBehind) {
  const auto ghosts = [](const std::vector<std::string>& users) {
    return std::count_if(users.begin(), users.end(),
                         [](const std::string& user) { return user.starts_with("metrics_ghost_"); });
  };
  const auto users_in = [](const Metrics& metrics) {
    std::vector<std::string> users;
    for (const auto& sample : metrics.samples("sluice_server_connects_total"))
      users.push_back(sample.labels.at("user"));
    return users;
  };
  const auto users_in_pools = [&] {
    std::vector<std::string> users;
    const json answer = ctltest::control(sluiced_.control_socket(), {{"cmd", "pools"}});
    for (const json& pool : answer["pools"]) users.push_back(pool.value("user", ""));
    return users;
  };
  constexpr int kUsers = 40;
  for (int i = 0; i < kUsers; ++i) {
    const PgConn ghost =
        harness::try_connect(sluiced_.conninfo("postgres", "metrics_ghost_" + std::to_string(i)));
    ASSERT_NE(PQstatus(ghost.get()), CONNECTION_OK);
  }
  Metrics after;
  ASSERT_TRUE(harness::wait_until([&] {
    after = scrape();
    return ghosts(users_in(after)) == 0;
  })) << ghosts(users_in(after))
      << " made-up users still have series";
  EXPECT_EQ(ghosts(users_in_pools()), 0);
  EXPECT_EQ(after.value("sluice_server_connects_total",
                        {{"database", "postgres"}, {"user", ""}, {"result", "failed"}}),
            kUsers);
}

// A real user that leaves: once its server is closed (server_idle_timeout_s) its pool is forgotten,
// and what it counted moves to the database's departed users, so the database's sum never goes back.
TEST(MetricsDepartedUsers, AUserThatLeftKeepsItsCountsInItsDatabasesTotal) {
  harness::Sluiced sluiced(
      harness::metrics_config({.overrides = {{"pool", {{"server_idle_timeout_s", 1}}}}}));
  const PgConn admin = harness::connect(harness::postgres().conninfo("postgres"));
  harness::exec(admin, "create role metrics_leaver login");
  const auto sent_by_database = [](const Metrics& metrics) {
    double sum = 0;
    for (const auto& sample : metrics.samples("sluice_client_sent_bytes_total"))
      sum += sample.labels.at("database") == "postgres" ? sample.value : 0;
    return sum;
  };
  const Labels leaver = {{"database", "postgres"}, {"user", "metrics_leaver"}};
  double sent = 0;
  {
    const PgConn client = harness::connect(sluiced.conninfo("postgres", "metrics_leaver"));
    harness::exec_ok(client, "select 1");
    sent = harness::scrape(harness::metrics_socket(sluiced)).value("sluice_client_sent_bytes_total", leaver);
  }
  double last_sum = 0;
  Metrics metrics;
  ASSERT_TRUE(harness::wait_until([&] {
    metrics = harness::scrape(harness::metrics_socket(sluiced));
    EXPECT_GE(sent_by_database(metrics), last_sum) << "the database's sum went back";
    last_sum = sent_by_database(metrics);
    return metrics.value_or("sluice_client_sent_bytes_total", leaver, -1) < 0;
  })) << "the user's series stayed after its pool was unused";
  EXPECT_GE(metrics.value("sluice_client_sent_bytes_total", {{"database", "postgres"}, {"user", ""}}), sent);
}

// The same with two workers, a client of the user on each: the workers fold their parts at their
// own janitor turns, yet every scrape shows the user's series whole until it leaves (review: it
// used to dip between the two turns, which Prometheus reads as a counter reset).
TEST(MetricsDepartedUsers, WithTwoWorkersAUsersSeriesLeavesWholeNeverLowerFirst) {
  harness::Sluiced sluiced(
      harness::metrics_config({.overrides = {{"workers", 2}, {"pool", {{"server_idle_timeout_s", 1}}}}}));
  const PgConn admin = harness::connect(harness::postgres().conninfo("postgres"));
  harness::exec(admin, "create role metrics_two_workers login");
  const Labels pair = {{"database", "postgres"}, {"user", "metrics_two_workers"}};
  {
    const PgConn first = harness::connect(sluiced.conninfo("postgres", "metrics_two_workers"));
    const PgConn second = harness::connect(sluiced.conninfo("postgres", "metrics_two_workers"));
    for (int i = 0; i < 20; ++i) {
      harness::exec_ok(first, "select 1");
      harness::exec_ok(second, "select repeat('x', 1000)");
    }
    const json clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
    std::set<int> workers;
    for (const auto& row : clients["clients"]) workers.insert(row["worker"].get<int>());
    ASSERT_EQ(workers.size(), 2U) << "the two clients should be on both workers";
  }
  double last = 0;
  Metrics metrics;
  ASSERT_TRUE(harness::wait_until(
      [&] {
        metrics = harness::scrape(harness::metrics_socket(sluiced));
        const double now = metrics.value_or("sluice_client_sent_bytes_total", pair, -1);
        if (now < 0) return true;
        EXPECT_GE(now, last) << "the user's series went back";
        last = now;
        return false;
      },
      20s))
      << "the user's series stayed after its pools were unused";
  EXPECT_GE(metrics.value("sluice_client_sent_bytes_total", {{"database", "postgres"}, {"user", ""}}), last);
}

// Only ErrorResponses a client is sent count. Here sluiced's own query (the client's settings put
// on its next server) fails: the client is sent one error (FATAL 42501), not also the server's.
TEST_F(MetricsFamilies, ErrorsOfSluicedsOwnQueriesAreNotCountedAsSentToClients) {
  const PgConn admin = harness::connect(harness::postgres().conninfo("postgres"));
  harness::exec(admin, "create role metrics_follow_login login");
  harness::exec(admin, "create role metrics_follow_granted");
  harness::exec_ok(admin, "grant metrics_follow_granted to metrics_follow_login");
  const PgConn client = harness::connect(sluiced_.conninfo("postgres", "metrics_follow_login"));
  harness::exec_ok(client, "set role metrics_follow_granted");
  // No server may be logging in while the REVOKE commits. As tested on PostgreSQL 15, a backend
  // whose startup overlaps a REVOKE may still SET ROLE to that role afterwards (checked without
  // sluiced: connections opened up to ~40 ms before it could, one opened 300 ms before could not),
  // so the restore on such a server succeeds, as the same SET on a direct connection opened then
  // would. The pool's second server is opened while the first reads the catalog: every server
  // must be logged in, and opened 300 ms or more before.
  json servers;
  ASSERT_TRUE(harness::wait_until([&] {
    servers = ctltest::control(sluiced_.control_socket(), {{"cmd", "servers"}}).at("servers");
    return !servers.empty() && std::all_of(servers.begin(), servers.end(), [](const json& row) {
      return row.at("state") != "connecting" && row.at("age_s").get<double>() >= 0.3;
    });
  })) << servers.dump();
  harness::exec_ok(admin, "revoke metrics_follow_granted from metrics_follow_login");
  const Metrics before = scrape();
  const harness::PgResult refused = harness::exec(client, "select current_user");
  ASSERT_NE(std::string(PQerrorMessage(client.get())).find("could not restore this session's settings"),
            std::string::npos)
      << PQresStatus(PQresultStatus(refused.get())) << " " << PQerrorMessage(client.get())
      << (PQresultStatus(refused.get()) == PGRES_TUPLES_OK
              ? std::string("ran as ") + PQgetvalue(refused.get(), 0, 0)
              : std::string())
      << "\nclients: " << ctltest::control(sluiced_.control_socket(), {{"cmd", "clients"}}).dump()
      << "\nteardown: " << ctltest::control(sluiced_.control_socket(), {{"cmd", "teardown"}}).dump();
  const Metrics after = scrape();
  EXPECT_EQ(after.value_or("sluice_client_errors_total", {{"class", "42"}}, 0),
            before.value_or("sluice_client_errors_total", {{"class", "42"}}, 0) + 1);
}

// An ErrorResponse larger than a read arrives in pieces: it counts in its own class.
TEST_F(MetricsFamilies, AnErrorSplitAcrossReadsCountsInItsClass) {
  const PgConn client = harness::connect(sluiced_.conninfo());
  const Metrics before = scrape();
  const harness::PgResult result = harness::exec(
      client, "do $$begin raise exception using message = repeat('x', 300000), errcode = '22012'; end$$");
  ASSERT_STREQ(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE), "22012");
  const Metrics after = scrape();
  EXPECT_EQ(after.value_or("sluice_client_errors_total", {{"class", "22"}}, 0),
            before.value_or("sluice_client_errors_total", {{"class", "22"}}, 0) + 1);
  EXPECT_EQ(after.value_or("sluice_client_errors_total", {{"class", "??"}}, 0), 0);
}

TEST_F(MetricsFamilies, ClientsServersPinningAndPreparedStatementsByState) {
  const PgConn pinned = harness::connect(sluiced_.conninfo());
  harness::exec_ok(pinned, "create temp table pin_me (n int)");
  const PgConn preparing = harness::connect(sluiced_.conninfo());
  PQclear(PQprepare(preparing.get(), "metrics_stmt", "select $1::int", 1, nullptr));
  const Labels pool = pool_labels();
  const Metrics metrics = scrape_until("sluice_clients_pinned", pool, 1);
  EXPECT_EQ(metrics.value("sluice_clients_pinned", pool), 1);
  Labels active = pool;
  active["state"] = "active";
  Labels idle = pool;
  idle["state"] = "idle";
  // The pinned client keeps its server: it counts as active, the other as idle.
  EXPECT_EQ(metrics.value("sluice_clients", active), 1);
  EXPECT_EQ(metrics.value("sluice_clients", idle), 1);
  EXPECT_EQ(metrics.value("sluice_servers", active), 1);
  EXPECT_EQ(metrics.value("sluice_pool_size", pool), 2);
  EXPECT_GE(metrics.value("sluice_prepared_statements", pool), 1);
}

TEST_F(MetricsFamilies, AClientThatQueuedForAServerCountsInTheWaitHistogram) {
  // pool_size 2: two clients hold a server each in a transaction, the third waits.
  const PgConn first = harness::connect(sluiced_.conninfo());
  const PgConn second = harness::connect(sluiced_.conninfo());
  harness::exec_ok(first, "begin");
  harness::exec_ok(second, "begin");
  const Labels pool = pool_labels();
  const Metrics before = scrape();
  const PgConn third = harness::connect(sluiced_.conninfo());
  ASSERT_EQ(PQsendQuery(third.get(), "select 1"), 1);
  Labels waiting = pool;
  waiting["state"] = "waiting";
  scrape_until("sluice_clients", waiting, 1);
  harness::exec_ok(first, "commit");
  while (PGresult* result = PQgetResult(third.get())) PQclear(result);
  const Metrics after = scrape();
  EXPECT_EQ(after.value("sluice_client_wait_seconds_count", pool),
            before.value("sluice_client_wait_seconds_count", pool) + 1);
  EXPECT_GT(after.value("sluice_client_wait_seconds_sum", pool),
            before.value("sluice_client_wait_seconds_sum", pool));
  EXPECT_EQ(after.value("sluice_clients", waiting), 0);
}

TEST_F(MetricsFamilies, ReloadsCountByResultWithTheirTime) {
  const Metrics before = scrape();
  EXPECT_FALSE(before.has_sample("sluice_config_last_reload_success"));
  ASSERT_EQ(::kill(sluiced_.pid(), SIGHUP), 0);
  Metrics after = scrape_until("sluice_config_reloads_total", {{"result", "ok"}}, 1);
  EXPECT_EQ(after.value("sluice_config_last_reload_success"), 1);
  EXPECT_GE(after.value("sluice_config_last_reload_timestamp_seconds"),
            after.value("sluice_start_time_seconds"));
  std::ofstream(sluiced_.config_path()) << "{ broken";
  ASSERT_EQ(::kill(sluiced_.pid(), SIGHUP), 0);
  after = scrape_until("sluice_config_reloads_total", {{"result", "failed"}}, 1);
  EXPECT_EQ(after.value("sluice_config_last_reload_success"), 0);
  EXPECT_EQ(after.value("sluice_config_reloads_total", {{"result", "ok"}}), 1);
}

TEST_F(MetricsFamilies, DrainStateAndLoopHealthAndBuildInfo) {
  Metrics metrics = scrape();
  EXPECT_EQ(metrics.value("sluice_state", {{"state", "running"}}), 1);
  EXPECT_EQ(metrics.value("sluice_drain_forced_scopes"), 0);
  EXPECT_EQ(metrics.samples("sluice_build_info").size(), 1U);
  EXPECT_TRUE(metrics.has_sample("sluice_loop_slow_callbacks_total"));
  // The loop's 250 ms timer keeps feeding the lag histogram.
  const double ticks = metrics.value("sluice_loop_lag_seconds_count", {{"worker", "0"}});
  scrape_until("sluice_loop_lag_seconds_count", {{"worker", "0"}}, ticks + 2);

  const PgConn busy = harness::connect(sluiced_.conninfo());
  harness::exec_ok(busy, "begin");
  ctltest::control(sluiced_.control_socket(), {{"cmd", "drain"}, {"timeout_s", 0.2}});
  metrics = scrape_until("sluice_drain_forced_scopes", {}, 1);
  EXPECT_EQ(metrics.value("sluice_drain_forced_scopes"), 1);  // its transaction was cut at the deadline
  EXPECT_EQ(metrics.value("sluice_state", {{"state", "running"}}), 0);
  EXPECT_EQ(metrics.value("sluice_state", {{"state", "drained"}}) +
                metrics.value("sluice_state", {{"state", "draining"}}),
            1);
}

TEST(MetricsFailedConnects, AServerThatCannotBeReachedCountsAsFailed) {
  const harness::TempDir nowhere("sluice-nowhere");
  harness::Sluiced sluiced(harness::metrics_config(
      {.overrides = {{"databases",
                      {{"unreachable",
                        {{"conninfo", "host=" + nowhere.path() + " port=1 dbname=postgres"},
                         {"query_wait_timeout_ms", 300}}}}}}}));
  const PgConn refused = harness::try_connect(sluiced.conninfo("unreachable"));
  EXPECT_NE(PQstatus(refused.get()), CONNECTION_OK);
  const Metrics metrics = harness::scrape(harness::metrics_socket(sluiced));
  const Labels failed = {{"database", "unreachable"}, {"result", "failed"}};
  EXPECT_GE(metrics.value("sluice_server_connects_total", failed), 1);
  EXPECT_EQ(metrics.value("sluice_server_connects_total", {{"database", "unreachable"}, {"result", "ok"}}),
            0);
  EXPECT_EQ(metrics.value("sluice_server_connect_duration_seconds_count", {{"database", "unreachable"}}), 0);
  EXPECT_GE(metrics.value("sluice_client_logins_total", {{"result", "failed"}}), 1);
}

// The main loop refuses a client past max_client_conn before any worker sees it: it counts too.
TEST(MetricsRefusedLogins, AClientRefusedAtMaxClientConnCountsAsRefusedInClass53) {
  harness::Sluiced sluiced(harness::metrics_config({.overrides = {{"limits", {{"max_client_conn", 1}}}}}));
  PgConn first;  // the harness's own readiness probe may still hold the one place a moment
  harness::wait_until([&] {
    first = harness::try_connect(sluiced.conninfo());
    return PQstatus(first.get()) == CONNECTION_OK;
  });
  const Metrics before = harness::scrape(harness::metrics_socket(sluiced));
  const PgConn second = harness::try_connect(sluiced.conninfo());
  ASSERT_NE(PQstatus(second.get()), CONNECTION_OK);
  EXPECT_NE(std::string(PQerrorMessage(second.get())).find("sorry, too many clients already"),
            std::string::npos);
  const Metrics metrics = harness::scrape(harness::metrics_socket(sluiced));
  EXPECT_EQ(metrics.value("sluice_client_logins_total", {{"result", "refused"}}),
            before.value("sluice_client_logins_total", {{"result", "refused"}}) + 1);
  EXPECT_EQ(metrics.value_or("sluice_client_errors_total", {{"class", "53"}}, 0),
            before.value_or("sluice_client_errors_total", {{"class", "53"}}, 0) + 1);
}

// Two worker loops: each keeps its own histograms; /metrics adds them up bucket by bucket. Named
// Workers* so that make test-sanitized runs it against the ThreadSanitizer build too.
TEST(WorkersMetrics, HistogramsOfEveryWorkerAddUp) {
  harness::Sluiced sluiced(harness::metrics_config({.pool_size = 4, .overrides = {{"workers", 2}}}));
  const std::string address = harness::metrics_socket(sluiced);
  const Labels pool = pool_labels();
  const Metrics before = harness::scrape(address);
  constexpr int kClients = 4;
  constexpr int kTransactions = 5;
  std::vector<PgConn> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(harness::connect(sluiced.conninfo()));
  for (int round = 0; round < kTransactions; ++round) {
    for (const auto& client : clients) harness::exec_ok(client, "select 1");
  }
  const Metrics after = harness::scrape(address);
  EXPECT_EQ(after.value("sluice_transaction_duration_seconds_count", pool) -
                before.value_or("sluice_transaction_duration_seconds_count", pool, 0),
            kClients * kTransactions);
  Labels inf = pool;
  inf["le"] = "+Inf";
  EXPECT_EQ(after.value("sluice_query_duration_seconds_bucket", inf),
            after.value("sluice_query_duration_seconds_count", pool));
  // Each loop has its own lag; both are there.
  EXPECT_GE(after.value("sluice_loop_lag_seconds_count", {{"worker", "0"}}), 0);
  EXPECT_GE(after.value("sluice_loop_lag_seconds_count", {{"worker", "1"}}), 0);
  EXPECT_EQ(after.value("sluice_client_logins_total", {{"result", "ok"}}) -
                before.value("sluice_client_logins_total", {{"result", "ok"}}),
            kClients);
}

}  // namespace
