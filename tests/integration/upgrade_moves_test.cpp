// Live upgrade (issue 18): the old sluiced hands each client over to the new one at a transaction
// boundary, socket and session state, and the client notices nothing: no reconnect, its settings
// and prepared statements intact, its cancel key honoured by the new process.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/scope_helpers.h"
#include "tests/integration/tls_helpers.h"
#include "tests/integration/upgrade_helpers.h"

namespace {

using harness::PgConn;
using nlohmann::json;
using namespace std::chrono_literals;
using upgradetest::expect_handed_over;
using upgradetest::expect_no_failure;
using upgradetest::kBenchDatabase;
using upgradetest::NewProcess;
using upgradetest::pgbench;

harness::PoolOptions options(const std::string& dbname = "postgres", json overrides = json::object()) {
  overrides["drain"] = {{"timeout_s", 10}};
  overrides["workers"] = 2;
  return {.dbname = dbname, .pool_size = 10, .overrides = std::move(overrides)};
}

class UpgradeMove : public upgradetest::UpgradeSuite {};

int clients_total(const harness::Sluiced& daemon) {
  return ctltest::status(daemon.control_socket()).at("clients").at("total").get<int>();
}

int clients_moved_in(const harness::Sluiced& daemon) {
  return ctltest::status(daemon.control_socket()).at("clients").at("moved_in").get<int>();
}

// A `SELECT pg_sleep(...)` runs on PostgreSQL (within 10 s).
bool sleep_runs() {
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  return harness::wait_until([&] {
    return harness::scalar(admin,
                           "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
                           "'SELECT pg_sleep%'") == "1";
  });
}

// What a connection hears while libpq is idle, from construction on: a FATAL that comes after the
// last reply goes to libpq's notice processor (during the PQexec that read that reply, if it came
// in the same read). until_closed() reads without sending anything: a query sent after the old
// process has exited could fail on the write before libpq reads the FATAL.
class LastWords {
 public:
  explicit LastWords(const PgConn& conn) : conn_(conn) {
    previous_ = PQsetNoticeProcessor(conn_.get(), &LastWords::hear, &heard_);
  }
  ~LastWords() { PQsetNoticeProcessor(conn_.get(), previous_, nullptr); }
  LastWords(const LastWords&) = delete;
  LastWords& operator=(const LastWords&) = delete;

  std::string until_closed() {
    // PQisBusy parses what PQconsumeInput read, even once the end has been read.
    harness::wait_until([&] {
      const bool open = PQconsumeInput(conn_.get()) != 0;
      PQisBusy(conn_.get());
      return !open;
    });
    return heard_ + PQerrorMessage(conn_.get());
  }

 private:
  static void hear(void* into, const char* message) { *static_cast<std::string*>(into) += message; }

  const PgConn& conn_;
  std::string heard_;
  PQnoticeProcessor previous_ = nullptr;
};

// Merges `patch` into the config file of `old`, which the new process reads (the old one does not
// reload it).
void rewrite_config(const harness::Sluiced& old, const json& patch) {
  json config = json::parse(std::ifstream(old.config_path()));
  config.merge_patch(patch);
  std::ofstream(old.config_path()) << config.dump(2) << "\n";
}

// Upgrades `old`, and waits until it has handed over every client and exited 0.
pid_t upgrade_and_wait(harness::Sluiced& old) {
  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  EXPECT_EQ(upgrade.exit_code, 0) << upgrade.out << upgrade.err;
  const pid_t new_pid = expect_handed_over(old, upgrade);
  const auto exit = old.wait_exit(15s);
  EXPECT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << "the old process did not exit 0";
  return new_pid;
}

// pgbench keeps its 58 connections for 20 s with the upgrade in the middle (it never reconnects: a
// dropped one is an aborted client and a non-zero exit), and the new process sees none of them log
// in: every one moved.
TEST_F(UpgradeMove, PgbenchSelectOnlyAndTpcbKeepEveryConnection) {
  ASSERT_NO_FATAL_FAILURE(upgradetest::make_bench_database());
  harness::Sluiced old(harness::metrics_config(options(kBenchDatabase)));
  const auto started = std::chrono::steady_clock::now();
  auto select_only = std::async(std::launch::async, [&] {
    return pgbench(old, {"-n", "-S", "-c", "50", "-j", "2", "-T", "20"});
  });
  auto tpcb = std::async(std::launch::async, [&] { return pgbench(old, {"-n", "-c", "8", "-T", "20"}); });
  ASSERT_TRUE(harness::wait_until([&] { return clients_total(old) == 58; }, 10s));
  ASSERT_TRUE(harness::wait_until([&] {  // TPC-B commits
    return ctltest::status(old.control_socket()).at("clients").at("active").get<int>() > 0;
  }));
  // The middle of the runs: the load has been on for 10 s (pgbench's clock started just before).
  harness::wait_until([&] { return std::chrono::steady_clock::now() - started >= 10s; }, 15s);
  const auto logins = [&] {
    return harness::Metrics::parse(harness::http_get(harness::metrics_socket(old)).body)
        .value("sluice_client_logins_total", {{"result", "ok"}});
  };
  // The old process: one login per connection (and each pgbench's first look at the database).
  EXPECT_GE(logins(), 58);
  NewProcess successor(upgrade_and_wait(old));

  // The control socket is the new process's now. The last clients may still be in the channel.
  EXPECT_TRUE(harness::wait_until([&] { return clients_total(old) == 58; }))
      << "every client is on the new process";
  expect_no_failure(select_only.get(), "pgbench -S -c 50 across the upgrade");
  expect_no_failure(tpcb.get(), "pgbench TPC-B -c 8 across the upgrade");
  EXPECT_EQ(logins(), 0) << "the new process (same metrics socket): a client logged in again";
  EXPECT_EQ(clients_moved_in(old), 58);
  const std::string log = old.log();
  EXPECT_NE(log.find("upgrade: 58 clients moved to pid " + std::to_string(successor.pid())),
            std::string::npos)
      << log;
}

// A psycopg 3 and an asyncpg connection keep their settings and named prepared statements
// (tests/drivers/upgrade_session_check.py).
TEST_F(UpgradeMove, PsycopgAndAsyncpgKeepTheirSettingsAndPreparedStatements) {
  harness::Sluiced old(options());
  const std::string ready = old.socket_dir() + "/drivers.ready";
  const std::string go = old.socket_dir() + "/drivers.go";
  auto drivers = std::async(std::launch::async, [&] {
    return harness::run_capture(
        {"/usr/bin/python3", "-E", "-s", std::string(SLUICE_DRIVERS_DIR) + "/upgrade_session_check.py",
         "--host", old.socket_dir(), "--port", std::to_string(old.port()), "--dbname", "postgres", "--user",
         scope_test::os_user(), "--ready", ready, "--go", go},
        60s);
  });
  ASSERT_TRUE(harness::wait_until([&] { return std::filesystem::exists(ready); }, 20s)) << drivers.get().err;
  NewProcess successor(upgrade_and_wait(old));
  std::ofstream(go).close();
  const auto run = drivers.get();
  EXPECT_TRUE(run.succeeded()) << run.describe() << "\n" << run.out << run.err;
  EXPECT_EQ(run.out,
            "psycopg 42 42 bx 7MB,moved_app,t18\n"
            "asyncpg 42 42 7MB,moved_app,t18\n");
}

// The key the old process gave out cancels a query once the client runs on the new process, and
// the old process is gone by then: the new one honours it itself.
TEST_F(UpgradeMove, ACancelAfterTheMoveStopsTheQuery) {
  harness::Sluiced old(options());
  std::vector<PgConn> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(harness::connect(old.conninfo()));
  for (auto& client : clients) EXPECT_EQ(harness::scalar(client, "SELECT 1"), "1");
  PGcancel* cancel = PQgetCancel(clients[2].get());
  ASSERT_NE(cancel, nullptr);
  NewProcess successor(upgrade_and_wait(old));

  ASSERT_EQ(PQsendQuery(clients[2].get(), "SELECT pg_sleep(30)"), 1);
  // PostgreSQL ignores a cancel that reaches the backend before the query does: wait until it runs.
  ASSERT_TRUE(sleep_runs());
  const auto started = std::chrono::steady_clock::now();
  char error[256];
  ASSERT_EQ(PQcancel(cancel, error, sizeof error), 1) << error;
  PQfreeCancel(cancel);
  const auto result = ctltest::await_result(clients[2], 10s);
  ASSERT_TRUE(result.has_value()) << "the query was not cancelled";
  EXPECT_EQ(ctltest::sqlstate(result->get()), "57014");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(harness::scalar(clients[2], "SELECT 2"), "2");
}

// A session-mode client moves with its server: the same backend, so its temporary table, settings
// and prepared statements (SQL-level and protocol-level) are all still there, and a cancel reaches
// that backend. One in a transaction at the upgrade moves once it commits.
TEST_F(UpgradeMove, ASessionModeClientKeepsItsBackendAndTemporaryTable) {
  harness::PoolOptions session = options();
  session.pool_mode = "session";
  harness::Sluiced old(session);
  const PgConn client = harness::connect(old.conninfo());
  harness::exec_ok(client, "CREATE TEMP TABLE moved_temp AS SELECT 18 AS v");
  harness::exec_ok(client, "SET work_mem = '6MB'");
  harness::exec_ok(client, "PREPARE by_sql AS SELECT v + 1 FROM moved_temp");
  harness::PgResult prepared(
      PQprepare(client.get(), "by_protocol", "SELECT v + $1::int FROM moved_temp", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQerrorMessage(client.get());
  const std::string backend = harness::scalar(client, "SELECT pg_backend_pid()");
  PGcancel* cancel = PQgetCancel(client.get());
  ASSERT_NE(cancel, nullptr);
  const PgConn in_transaction = harness::connect(old.conninfo());
  harness::exec_ok(in_transaction, "CREATE TEMP TABLE pending (v int)");
  harness::exec_ok(in_transaction, "BEGIN");
  harness::exec_ok(in_transaction, "INSERT INTO pending VALUES (7)");
  const auto old_fds = [&] {
    const auto entries = std::filesystem::directory_iterator("/proc/" + std::to_string(old.pid()) + "/fd");
    return std::distance(std::filesystem::begin(entries), std::filesystem::end(entries));
  };
  const auto fds_before = old_fds();

  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.out << upgrade.err;
  NewProcess successor(expect_handed_over(old, upgrade));
  ASSERT_TRUE(harness::wait_until([&] {
    return ctltest::status(old.control_socket()).at("upgrade").value("old_moved", 0) == 1;
  })) << ctltest::status(old.control_socket()).dump();
  EXPECT_FALSE(old.wait_exit(100ms).has_value()) << "the old process left before the open transaction ended";
  // The old process kept nothing of what left: the client and its server moved, the client and
  // control listeners were handed over; the handover channel is its one new descriptor.
  EXPECT_EQ(old_fds(), fds_before - 2 - 2 + 1);
  harness::exec_ok(in_transaction, "COMMIT");
  const auto exit = old.wait_exit(15s);
  ASSERT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0);

  EXPECT_EQ(harness::scalar(client, "SELECT pg_backend_pid()"), backend);
  EXPECT_EQ(harness::scalar(client, "SELECT v FROM moved_temp"), "18");
  EXPECT_EQ(harness::scalar(client, "SHOW work_mem"), "6MB");
  EXPECT_EQ(harness::scalar(client, "EXECUTE by_sql"), "19");
  const char* two = "2";
  harness::PgResult executed(PQexecPrepared(client.get(), "by_protocol", 1, &two, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(executed.get()), PGRES_TUPLES_OK) << PQerrorMessage(client.get());
  EXPECT_STREQ(PQgetvalue(executed.get(), 0, 0), "20");
  EXPECT_EQ(harness::scalar(in_transaction, "SELECT v FROM pending"), "7");

  ASSERT_EQ(PQsendQuery(client.get(), "SELECT pg_sleep(30)"), 1);
  ASSERT_TRUE(sleep_runs());
  char error[256];
  ASSERT_EQ(PQcancel(cancel, error, sizeof error), 1) << error;
  PQfreeCancel(cancel);
  const auto result = ctltest::await_result(client, 10s);
  ASSERT_TRUE(result.has_value()) << "the query was not cancelled";
  EXPECT_EQ(ctltest::sqlstate(result->get()), "57014");
}

// A transaction left open past drain.timeout_s is ended as a drain ends it: rolled back, its client
// closed, counted as forced; the client beside it, idle, moved at once.
TEST_F(UpgradeMove, ATransactionOpenAtTheDeadlineIsForcedAsByADrain) {
  harness::PoolOptions short_drain = options();
  short_drain.overrides["drain"] = {{"timeout_s", 1}};
  short_drain.overrides["workers"] = 1;  // the worker on the main loop: handover calls run inline
  harness::Sluiced old(short_drain);
  const PgConn idle = harness::connect(old.conninfo());
  const PgConn open = harness::connect(old.conninfo());
  harness::exec_ok(idle, "CREATE TABLE IF NOT EXISTS upgrade_forced (v int)");
  harness::exec_ok(open, "BEGIN");
  harness::exec_ok(open, "INSERT INTO upgrade_forced VALUES (1)");
  NewProcess successor(upgrade_and_wait(old));

  EXPECT_NE(old.log().find("upgrade: 1 clients moved to pid " + std::to_string(successor.pid()) +
                           ", the others drained (1 scopes forced at the deadline)"),
            std::string::npos)
      << old.log();
  EXPECT_NE(PQresultStatus(harness::exec(open, "COMMIT").get()), PGRES_COMMAND_OK);
  EXPECT_EQ(harness::scalar(idle, "SELECT count(*) FROM upgrade_forced"), "0") << "the forced write was kept";
  harness::exec_ok(idle, "DROP TABLE upgrade_forced");
}

// A transaction-mode client pinned to its server (a temporary table, an SQL PREPARE) moves with
// it: the same backend, its temporary table and SQL-level statement there, and its protocol-level
// statement prepared again under this process's names. Once its state is gone it is unpinned and
// its server goes back to the new process's pool.
TEST_F(UpgradeMove, APinnedTransactionModeClientMovesWithItsServer) {
  harness::Sluiced old(options());
  const PgConn pinned = harness::connect(old.conninfo());
  harness::exec_ok(pinned, "CREATE TEMP TABLE keeps_its_server AS SELECT 40 AS v");
  harness::exec_ok(pinned, "PREPARE by_sql AS SELECT v + 1 FROM keeps_its_server");
  harness::exec_ok(pinned, "SET work_mem = '3MB'");
  harness::PgResult prepared(PQprepare(pinned.get(), "by_protocol", "SELECT $1::int * 2", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQerrorMessage(pinned.get());
  const std::string backend = harness::scalar(pinned, "SELECT pg_backend_pid()");
  NewProcess successor(upgrade_and_wait(old));

  EXPECT_EQ(harness::scalar(pinned, "SELECT pg_backend_pid()"), backend);
  EXPECT_EQ(harness::scalar(pinned, "EXECUTE by_sql"), "41");
  const char* twenty_one = "21";
  harness::PgResult executed(
      PQexecPrepared(pinned.get(), "by_protocol", 1, &twenty_one, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(executed.get()), PGRES_TUPLES_OK) << PQerrorMessage(pinned.get());
  EXPECT_STREQ(PQgetvalue(executed.get(), 0, 0), "42");
  EXPECT_EQ(ctltest::status(old.control_socket()).at("clients").at("pinned"), 1);
  harness::exec_ok(pinned, "DROP TABLE keeps_its_server");
  harness::exec_ok(pinned, "DEALLOCATE by_sql");
  ASSERT_TRUE(harness::wait_until(
      [&] { return ctltest::status(old.control_socket()).at("clients").at("pinned").get<int>() == 0; }));
  EXPECT_EQ(harness::scalar(pinned, "SHOW work_mem"), "3MB");
  harness::PgResult again(PQexecPrepared(pinned.get(), "by_protocol", 1, &twenty_one, nullptr, nullptr, 0));
  EXPECT_EQ(PQresultStatus(again.get()), PGRES_TUPLES_OK) << PQerrorMessage(pinned.get());
}

// The new process dies after it took over: the old one moves no one into the dead channel; a client
// still in a transaction there finishes it and is drained as by SIGTERM (57P01), and the old process
// exits 0.
TEST_F(UpgradeMove, IfTheNewProcessDiesTheClientsLeftAreDrained) {
  harness::Sluiced old(options());
  const PgConn open = harness::connect(old.conninfo());
  harness::exec_ok(open, "BEGIN");
  EXPECT_EQ(harness::scalar(open, "SELECT 1"), "1");
  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.out << upgrade.err;
  const auto new_pid = ctltest::status(old.control_socket()).at("pid").get<pid_t>();
  ASSERT_NE(new_pid, old.pid());
  ::kill(new_pid, SIGKILL);  // its parent, the old process, reaps it
  ASSERT_TRUE(harness::wait_until([&] {
    return old.log().find("upgrade: the new process is gone") != std::string::npos;
  })) << old.log();

  LastWords last_words(open);
  harness::exec_ok(open, "COMMIT");
  const std::string heard = last_words.until_closed();
  EXPECT_NE(heard.find("terminating connection due to administrator command"), std::string::npos) << heard;
  const auto exit = old.wait_exit(15s);
  EXPECT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << old.log();
}

// The new process dies with clients handed over that it has not taken yet (stopped, it reads
// nothing from the channel): the old process kept a copy of each one's socket until the new one
// answered for it, and drains them as by SIGTERM (57P01) instead of leaving them a bare EOF.
TEST_F(UpgradeMove, ClientsInTheChannelWhenTheNewProcessDiesAreDrainedNotDropped) {
  harness::PoolOptions debug_log = options();
  debug_log.overrides["log_level"] = "debug";  // "handed over to the new process" for each client
  harness::Sluiced old(debug_log);
  std::vector<PgConn> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(harness::connect(old.conninfo()));
    harness::exec_ok(clients.back(), "BEGIN");
    EXPECT_EQ(harness::scalar(clients.back(), "SELECT 1"), "1");
  }
  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.out << upgrade.err;
  const auto new_pid = ctltest::status(old.control_socket()).at("pid").get<pid_t>();
  ASSERT_NE(new_pid, old.pid());
  ASSERT_EQ(::kill(new_pid, SIGSTOP), 0);

  std::vector<std::unique_ptr<LastWords>> last_words;
  for (const PgConn& client : clients) {
    last_words.push_back(std::make_unique<LastWords>(client));
    harness::exec_ok(client, "COMMIT");  // at rest now: it moves, into a channel nobody reads
  }
  const auto handed_over = [&] {
    const std::string log = old.log();
    int count = 0;
    for (auto at = log.find("handed over to the new process"); at != std::string::npos;
         at = log.find("handed over to the new process", at + 1))
      ++count;
    return count;
  };
  ASSERT_TRUE(harness::wait_until([&] { return handed_over() == 3; })) << old.log();
  ::kill(new_pid, SIGKILL);  // its parent, the old process, reaps it

  for (auto& words : last_words) {
    const std::string heard = words->until_closed();
    EXPECT_NE(heard.find("terminating connection due to administrator command"), std::string::npos) << heard;
  }
  const auto exit = old.wait_exit(15s);
  EXPECT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << old.log();
}

// A moved client is let in again under the new process's config, as a fresh login would be: a TCP
// client that the new hba file rejects hears what a fresh login hears (28000, PostgreSQL's
// "pg_hba.conf rejects connection ..."), while a Unix-socket client beside it moves and goes on.
TEST_F(UpgradeMove, AClientTheNewConfigRefusesHearsWhatAFreshLoginWould) {
  const int port = harness::free_tcp_port();
  json overrides;
  overrides["listen"] = {{"tcp", "127.0.0.1:" + std::to_string(port)}};
  overrides["auth"] = {{"type", "hba"}, {"hba_file", "hba.conf"}};
  auto config = harness::default_config(options("postgres", overrides));
  const std::string hba = config.dir.path() + "/hba.conf";
  std::ofstream(hba) << "local all all trust\nhost all all 127.0.0.1/32 trust\n";
  harness::Sluiced old(std::move(config));
  const PgConn tcp = harness::connect(harness::tcp_conninfo(port, ""));
  const PgConn local = harness::connect(old.conninfo());
  EXPECT_EQ(harness::scalar(tcp, "SELECT 1"), "1");
  EXPECT_EQ(harness::scalar(local, "SELECT 1"), "1");
  std::ofstream(hba) << "local all all trust\nhost all all 127.0.0.1/32 reject\n";  // for the new process
  LastWords last_words(tcp);
  NewProcess successor(upgrade_and_wait(old));

  const std::string heard = last_words.until_closed();
  EXPECT_NE(heard.find("pg_hba.conf rejects connection for host \"127.0.0.1\""), std::string::npos) << heard;
  EXPECT_EQ(harness::scalar(local, "SELECT 2"), "2");
  const PgConn fresh = harness::try_connect(harness::tcp_conninfo(port, ""));
  EXPECT_NE(std::string(PQerrorMessage(fresh.get())).find("pg_hba.conf rejects connection"),
            std::string::npos)
      << "a fresh login is not refused the same way: " << PQerrorMessage(fresh.get());
}

// The same with tls.mode "require" in the new config: a plain TCP client that moves hears what a
// plain login hears there (28000, "no pg_hba.conf entry for host ..., no encryption").
TEST_F(UpgradeMove, APlainTcpClientIsRefusedWhenTheNewConfigRequiresTls) {
  const harness::TestPki pki;
  const int port = harness::free_tcp_port();
  json overrides = harness::tls_overrides(pki, "allow", port);
  overrides["auth"] = {{"type", "trust"}};
  harness::Sluiced old(options("postgres", overrides));
  const PgConn plain = harness::connect(harness::tcp_conninfo(port, "sslmode=disable"));
  EXPECT_EQ(harness::scalar(plain, "SELECT 1"), "1");
  rewrite_config(old, {{"tls", {{"mode", "require"}}}});
  LastWords last_words(plain);
  NewProcess successor(upgrade_and_wait(old));

  const std::string heard = last_words.until_closed();
  EXPECT_NE(heard.find("no pg_hba.conf entry for host \"127.0.0.1\""), std::string::npos) << heard;
  EXPECT_NE(heard.find("no encryption"), std::string::npos) << heard;
}

// A new config that tracks no statements (pool.max_prepared_statements 0) cannot give a moved
// client its named protocol-level prepared statements (its next Execute would fail, 26000): the new
// process declines the client, and the old one drains it as it would without an upgrade (57P01
// at rest), so that it reconnects into the new config. A client without statements moves.
TEST_F(UpgradeMove, AClientWhoseStatementsTheNewConfigDoesNotTrackIsDrained) {
  harness::Sluiced old(options());
  const PgConn prepared = harness::connect(old.conninfo());
  const PgConn plain = harness::connect(old.conninfo());
  harness::PgResult made(PQprepare(prepared.get(), "by_protocol", "SELECT $1::int * 2", 1, nullptr));
  ASSERT_EQ(PQresultStatus(made.get()), PGRES_COMMAND_OK) << PQerrorMessage(prepared.get());
  EXPECT_EQ(harness::scalar(plain, "SELECT 1"), "1");
  rewrite_config(old, {{"pool", {{"max_prepared_statements", 0}}}});
  LastWords last_words(prepared);
  NewProcess successor(upgrade_and_wait(old));

  const std::string heard = last_words.until_closed();
  EXPECT_NE(heard.find("terminating connection due to administrator command"), std::string::npos) << heard;
  EXPECT_NE(old.log().find("the new process declined a client: drained"), std::string::npos) << old.log();
  EXPECT_EQ(harness::scalar(plain, "SELECT 2"), "2");
}

// A TLS client's session lives in the old process's OpenSSL: it is drained as by SIGTERM (at its
// boundary, with PostgreSQL's 57P01), while a plain client beside it moves.
TEST_F(UpgradeMove, ATlsClientIsDrainedAndAPlainOneMoves) {
  const harness::TestPki pki;
  const int port = harness::free_tcp_port();
  json overrides = harness::tls_overrides(pki, "allow", port);
  overrides["auth"] = {{"type", "trust"}};
  harness::Sluiced old(options("postgres", overrides));
  const PgConn encrypted = harness::connect(harness::tcp_conninfo(port, "sslmode=require"));
  const PgConn plain = harness::connect(old.conninfo());
  EXPECT_EQ(harness::scalar(encrypted, "SELECT 1"), "1");
  EXPECT_EQ(harness::scalar(plain, "SELECT 1"), "1");
  LastWords last_words(encrypted);
  NewProcess successor(upgrade_and_wait(old));

  EXPECT_NE(old.log().find("upgrade: 1 clients moved to pid " + std::to_string(successor.pid())),
            std::string::npos)
      << old.log();
  EXPECT_EQ(harness::scalar(plain, "SELECT 2"), "2");
  const std::string heard = last_words.until_closed();
  EXPECT_NE(heard.find("terminating connection due to administrator command"), std::string::npos) << heard;
}

// Neither process keeps what it no longer needs: PostgreSQL has no backend the old process left
// open, and the new one has a descriptor for each client and server and otherwise as many as a
// fresh sluiced; once the moved clients leave, their descriptors go too.
TEST_F(UpgradeMove, NothingLeaksInEitherProcessOrOnTheServer) {
  const std::string database = "upgrade_move_leaks";
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(admin, "DROP DATABASE IF EXISTS " + database + " WITH (FORCE)");
  harness::exec_ok(admin, "CREATE DATABASE " + database);
  harness::Sluiced old(options(database));
  harness::Sluiced fresh(options(database));
  std::vector<PgConn> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(harness::connect(old.conninfo(database)));
    harness::exec_ok(clients.back(), "SET work_mem = '5MB'");
    EXPECT_EQ(harness::scalar(clients.back(), "SELECT 1"), "1");
  }
  NewProcess successor(upgrade_and_wait(old));
  for (auto& client : clients) EXPECT_EQ(harness::scalar(client, "SHOW work_mem"), "5MB");

  const auto backends = [&] {
    return std::stoi(
        harness::scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + database + "'"));
  };
  const auto base_fds = [](const harness::Sluiced& daemon) {
    const json status = ctltest::status(daemon.control_socket());
    return status.at("fds").get<int>() - status.at("clients").at("total").get<int>() -
           status.at("servers").at("total").get<int>();
  };
  const auto servers = [&] {
    return ctltest::status(old.control_socket()).at("servers").at("total").get<int>();
  };
  EXPECT_EQ(clients_total(old), 6);
  EXPECT_TRUE(harness::wait_until([&] { return backends() == servers(); }))
      << backends() << " backends for " << servers() << " servers: the old process left some open";
  EXPECT_EQ(base_fds(old), base_fds(fresh));
  clients.clear();
  ASSERT_TRUE(harness::wait_until([&] { return clients_total(old) == 0; }));
  EXPECT_EQ(base_fds(old), base_fds(fresh));
}

}  // namespace
