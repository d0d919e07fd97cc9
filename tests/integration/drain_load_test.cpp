// Drain under load (DESIGN §3, issue 3 §8): 20 clients in 0.4 s transactions, SIGTERM mid-flight.
// Every acknowledged commit is kept, no begun transaction is aborted, newcomers are refused at
// once, sluiced exits 0 well before the drain timeout and leaves no server connection behind.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <iterator>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

namespace {

using harness::PgConn;
using harness::PgResult;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kClients = 20;
constexpr int kDrainTimeoutS = 10;
constexpr long long kHolderId = -1;

struct Worker {
  PgConn conn;
  std::unique_ptr<ctltest::NoticeLog> notices;
  std::vector<long long> acknowledged;
  int commits_after_sigterm = 0;
  bool ended_at_boundary = false;  // its BEGIN was refused: the connection was closed between transactions
  bool told_57P01 = false;
  std::string ending;   // how it ended, for messages
  std::string problem;  // set when a statement inside a transaction failed
};

TEST(DrainLoadTest, SigtermUnderLoadKeepsEveryCommitAndAbortsNothing) {
  const PgConn observer = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(observer, "SET client_min_messages TO warning");
  harness::exec_ok(observer, "DROP TABLE IF EXISTS drain_load_commits");
  harness::exec_ok(observer, "CREATE TABLE drain_load_commits (id bigint PRIMARY KEY)");

  harness::Sluiced daemon({.pool_size = 8, .overrides = {{"drain", {{"timeout_s", kDrainTimeoutS}}}}});
  std::vector<Worker> workers(kClients);
  for (Worker& worker : workers) {
    worker.conn = harness::connect(daemon.conninfo());
    worker.notices = std::make_unique<ctltest::NoticeLog>(worker.conn);
  }
  const PgConn holder = harness::connect(daemon.conninfo());
  const ctltest::NoticeLog holder_notices(holder);

  std::atomic<long long> next_id{1};
  std::atomic<int> commits{0};
  std::atomic<bool> sigterm_sent{false};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (Worker& worker : workers) {
    threads.emplace_back([&worker, &next_id, &commits, &sigterm_sent, &stop] {
      try {
        while (!stop) {
          const long long id = next_id++;
          const ctltest::Statement begin = ctltest::exec_all(worker.conn, "BEGIN");
          if (!begin.ok()) {
            worker.ended_at_boundary = true;
            worker.told_57P01 = begin.has_sqlstate("57P01") || worker.notices->saw_sqlstate("57P01");
            worker.ending = "BEGIN refused: " + begin.describe();
            return;
          }
          for (const std::string& sql : {"INSERT INTO drain_load_commits VALUES (" + std::to_string(id) + ")",
                                         std::string("SELECT pg_sleep(0.4)")}) {
            const ctltest::Statement result = ctltest::exec_all(worker.conn, sql);
            if (!result.ok()) {
              worker.problem = "\"" + sql + "\" failed inside a transaction: " + result.describe();
              return;
            }
          }
          const bool after_sigterm = sigterm_sent;
          const ctltest::Statement commit = ctltest::exec_all(worker.conn, "COMMIT");
          if (!commit.ok()) {
            worker.problem = "COMMIT of id " + std::to_string(id) + " failed: " + commit.describe();
            return;
          }
          worker.acknowledged.push_back(id);
          if (after_sigterm) ++worker.commits_after_sigterm;
          ++commits;
        }
        worker.ending = "stopped by the test";
      } catch (const std::exception& e) {
        worker.problem = std::string("exception: ") + e.what();
      }
    });
  }
  // Normally every worker ends on its own, when sluiced closes its connection; `stop` is only for
  // giving up early (sluiced still running), or a worker just back from COMMIT would end unrefused.
  const auto join_all = [&](bool stop_them) {
    stop = stop_them;
    for (auto& thread : threads) {
      if (thread.joinable()) thread.join();
    }
  };

  // Load is flowing; one more client opens a transaction the test finishes by hand.
  const bool flowing = harness::wait_until([&] { return commits >= 2 * kClients; }, 20s);
  if (!flowing) {
    join_all(true);
    FAIL() << "only " << commits << " commits under load in 20 s";
  }
  harness::exec_ok(holder, "BEGIN");
  harness::exec_ok(holder, "INSERT INTO drain_load_commits VALUES (" + std::to_string(kHolderId) + ")");

  const auto sigterm_at = Clock::now();
  sigterm_sent = true;
  daemon.send_signal(SIGTERM);

  // The holder keeps the drain going while the newcomer knocks.
  EXPECT_TRUE(ctltest::wait_for_state(daemon.control_socket(), "draining", 10s))
      << "SIGTERM did not start a drain";
  const auto knock = Clock::now();
  const PgConn newcomer = harness::try_connect(daemon.conninfo());
  const auto refused_in = Clock::now() - knock;
  EXPECT_EQ(PQstatus(newcomer.get()), CONNECTION_BAD) << "a newcomer got in during the drain";
  EXPECT_NE(std::string(PQerrorMessage(newcomer.get())).find("the database system is shutting down"),
            std::string::npos)
      << PQerrorMessage(newcomer.get());
  EXPECT_LT(refused_in, 5s) << "the newcomer waited "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(refused_in).count()
                            << " ms";

  const nlohmann::json draining = ctltest::status(daemon.control_socket());
  EXPECT_EQ(draining.value("state", ""), "draining") << draining.dump();
  EXPECT_TRUE(draining["drain"].value("started", false)) << draining.dump();
  EXPECT_GE(draining["drain"].value("scopes_remaining", 0), 1)
      << "the holder's transaction: " << draining.dump();
  EXPECT_LE(draining["drain"].value("deadline_in_s", 99.0), kDrainTimeoutS) << draining.dump();

  // The holder's transaction finishes: its COMMIT is answered, then it is closed with 57P01.
  const ctltest::Statement holder_commit = ctltest::exec_all(holder, "COMMIT");
  EXPECT_TRUE(holder_commit.ok()) << "COMMIT inside the drain: " << holder_commit.describe();
  const bool holder_committed = holder_commit.ok();
  EXPECT_TRUE(ctltest::await_closed_while_idle(holder)) << "the holder was not closed after its transaction";
  EXPECT_TRUE(holder_notices.saw_sqlstate("57P01")) << holder_notices.describe();

  const auto exit_status = daemon.wait_exit(std::chrono::seconds(kDrainTimeoutS + 5));
  const auto exited_in = Clock::now() - sigterm_at;
  if (!exit_status) {
    daemon.send_signal(SIGKILL);  // or the workers could wait on it forever
    (void)daemon.wait_exit(5s);
  }
  join_all(false);  // sluiced is gone: every connection is closed
  ASSERT_TRUE(exit_status.has_value())
      << "sluiced still running " << kDrainTimeoutS + 5 << " s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << "wait status " << *exit_status;
  EXPECT_LT(exited_in, std::chrono::seconds(kDrainTimeoutS))
      << "exit took " << std::chrono::duration_cast<std::chrono::milliseconds>(exited_in).count()
      << " ms: the drain ran into its deadline";

  // Every client ended between transactions, told why; none had a statement or COMMIT fail.
  std::set<long long> acknowledged;
  if (holder_committed) acknowledged.insert(kHolderId);
  int commits_after_sigterm = 0;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    const Worker& worker = workers[i];
    SCOPED_TRACE("client " + std::to_string(i));
    EXPECT_EQ(worker.problem, "") << "a transaction that had begun was cut";
    EXPECT_TRUE(worker.ended_at_boundary) << "ended: " << worker.ending;
    EXPECT_TRUE(worker.told_57P01) << worker.ending << " / notices: " << worker.notices->describe();
    acknowledged.insert(worker.acknowledged.begin(), worker.acknowledged.end());
    commits_after_sigterm += worker.commits_after_sigterm;
  }
  EXPECT_GE(commits_after_sigterm, 1) << "no transaction was in flight at SIGTERM: the test proved nothing";

  // The table holds exactly the acknowledged commits: none lost, none that was not acknowledged.
  std::set<long long> stored;
  const PgResult rows = harness::exec(observer, "SELECT id FROM drain_load_commits");
  ASSERT_EQ(PQresultStatus(rows.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(rows.get());
  for (int row = 0; row < PQntuples(rows.get()); ++row)
    stored.insert(std::stoll(PQgetvalue(rows.get(), row, 0)));
  std::vector<long long> lost;
  std::set_difference(acknowledged.begin(), acknowledged.end(), stored.begin(), stored.end(),
                      std::back_inserter(lost));
  std::vector<long long> unacknowledged;
  std::set_difference(stored.begin(), stored.end(), acknowledged.begin(), acknowledged.end(),
                      std::back_inserter(unacknowledged));
  EXPECT_TRUE(lost.empty()) << lost.size() << " acknowledged commits are missing, e.g. id " << lost.front();
  EXPECT_TRUE(unacknowledged.empty())
      << unacknowledged.size() << " rows were committed but never acknowledged, e.g. id "
      << unacknowledged.front();
  EXPECT_GE(acknowledged.size(), static_cast<std::size_t>(2 * kClients));

  // No server connection left: PostgreSQL shows no backend sluiced opened.
  std::string left;
  const bool none_left = harness::wait_until(
      [&] {
        left = harness::scalar(
            observer,
            "SELECT count(*) || ' ' || coalesce(string_agg(pid::text || ':' || state, ','), '') "
            "FROM pg_stat_activity WHERE datname = 'postgres' AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()");
        return left.starts_with("0 ");
      },
      3s);
  EXPECT_TRUE(none_left) << "backends of sluiced still open after it exited (count pid:state): " << left;
}

}  // namespace
