// Live upgrade (issue 18): the listening sockets move to a new sluiced without a connection
// refused or a transaction lost; a new binary that fails leaves the old one serving.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <future>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
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

constexpr int kExitUsage = 2;

harness::PoolOptions options(json overrides = json::object(), const std::string& dbname = "postgres") {
  overrides["drain"] = {{"timeout_s", 10}};
  return {.dbname = dbname, .pool_size = 10, .overrides = std::move(overrides)};
}

class Upgrade : public upgradetest::UpgradeSuite {};

TEST_F(Upgrade, PgbenchWithAConnectionPerTransactionSeesNoFailure) {
  ASSERT_NO_FATAL_FAILURE(upgradetest::make_bench_database());

  harness::Sluiced old(options({{"workers", 2}}, kBenchDatabase));
  // A transaction open when the upgrade comes commits on the old process, then its session moves.
  const PgConn in_transaction = harness::connect(old.conninfo(kBenchDatabase));
  harness::exec_ok(in_transaction, "CREATE TABLE upgrade_commit_check (v int)");
  harness::exec_ok(in_transaction, "BEGIN");
  harness::exec_ok(in_transaction, "INSERT INTO upgrade_commit_check VALUES (18)");

  auto select_only = std::async(std::launch::async, [&] {
    return pgbench(old, {"-n", "-C", "-S", "-c", "8", "-j", "2", "-T", "4"});
  });
  auto tpcb = std::async(std::launch::async, [&] {
    return pgbench(old, {"-n", "-C", "-c", "4", "-T", "4"});
  });
  // Mid-run: both are connecting and committing at full speed.
  ASSERT_TRUE(harness::wait_until(
      [&] { return ctltest::status(old.control_socket()).at("clients").at("total").get<int>() >= 4; }, 10s));
  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.out << upgrade.err;
  NewProcess successor(expect_handed_over(old, upgrade));

  harness::exec_ok(in_transaction, "COMMIT");
  expect_no_failure(select_only.get(), "pgbench -C -S across the upgrade");
  expect_no_failure(tpcb.get(), "pgbench -C (TPC-B) across the upgrade");
  const auto exit = old.wait_exit(20s);
  EXPECT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0)
      << "the old process did not drain and exit 0";

  // What the old process committed is there; the session moved at its transaction boundary and
  // goes on, with the key the old process gave it.
  const PgConn after = harness::connect(old.conninfo(kBenchDatabase));
  EXPECT_EQ(harness::scalar(after, "SELECT v FROM upgrade_commit_check"), "18");
  EXPECT_EQ(harness::scalar(in_transaction, "SELECT count(*) FROM upgrade_commit_check"), "1");
  // The socket file stayed: the new process serves on it, and answers the control socket.
  EXPECT_EQ(ctltest::status(old.control_socket()).at("state"), "running");
  EXPECT_EQ(harness::scalar(after, "SELECT 18"), "18");
}

// A TCP connection to 127.0.0.1:port is accepted (someone listens).
bool tcp_accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return connected;
}

// Every listener moves: the client socket, listen.tcp, the control socket, metrics.listen.
json with_tcp_listeners(int tcp_port, int metrics_port) {
  return {{"listen", {{"tcp", "127.0.0.1:" + std::to_string(tcp_port)}}},
          {"metrics", {{"listen", "127.0.0.1:" + std::to_string(metrics_port)}}}};
}

// SIGUSR2 does the same, and neither process keeps a descriptor it should not: the new one,
// once alone, has as many as a fresh sluiced with the same configuration.
TEST_F(Upgrade, Sigusr2HandsOverEveryListenerAndLeavesNoDescriptorBehind) {
  const int tcp_port = harness::free_tcp_port();
  const int metrics_port = harness::free_tcp_port();
  harness::Sluiced old(options(with_tcp_listeners(tcp_port, metrics_port)));
  harness::Sluiced fresh(options(with_tcp_listeners(harness::free_tcp_port(), harness::free_tcp_port())));
  {
    const PgConn warm = harness::connect(old.conninfo());
    EXPECT_EQ(harness::scalar(warm, "SELECT 1"), "1");
  }
  old.send_signal(SIGUSR2);
  ASSERT_TRUE(harness::wait_until(
      [&] { return ctltest::status(old.control_socket()).at("pid").get<pid_t>() != old.pid(); }, 20s))
      << old.log();
  NewProcess successor(ctltest::status(old.control_socket()).at("pid").get<pid_t>());
  const auto exit = old.wait_exit(20s);
  ASSERT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << old.log();
  // The channel to the old process closes with it: the new one forgets its predecessor.
  ASSERT_TRUE(
      harness::wait_until([&] { return ctltest::status(old.control_socket()).at("upgrade").is_null(); }));
  EXPECT_EQ(upgradetest::open_fds(old.control_socket()), upgradetest::open_fds(fresh.control_socket()));
  EXPECT_TRUE(tcp_accepts(tcp_port)) << "listen.tcp was not handed over";
  EXPECT_TRUE(tcp_accepts(metrics_port)) << "metrics.listen was not handed over";
  const PgConn client = harness::connect(old.conninfo());
  EXPECT_EQ(harness::scalar(client, "SELECT 2"), "2");
}

// A new binary that cannot serve changes nothing: the old one serves on, sluicectl says why, and
// no descriptor of the attempt is left in the old process.
TEST_F(Upgrade, ABrokenNewBinaryLeavesTheOldOneServing) {
  harness::Sluiced old(options());
  const PgConn client = harness::connect(old.conninfo());
  EXPECT_EQ(harness::scalar(client, "SELECT 0"), "0");  // its server is open before the count
  const int fds_before = upgradetest::open_fds(old.control_socket());
  const std::string dir = old.socket_dir();
  struct Attempt {
    std::vector<std::string> args;
    std::string reason;
  };
  const std::vector<Attempt> attempts = {
      {{"--binary", "/bin/false"}, "the new process exited with status 1 before reporting ready"},
      {{"--binary", dir + "/missing-sluiced"},
       "cannot start " + dir + "/missing-sluiced: no such file or directory"},
      {{"--binary", upgradetest::write_script(dir, "fails.sh", "echo broken >&2; exit 3")},
       "exited with status 3 before reporting ready"},
      {{"--binary", upgradetest::write_script(dir, "hangs.sh", "exec sleep 60"), "--timeout", "1"},
       "did not report ready within 1000 ms"},
      {{"--binary",
        upgradetest::write_script(
            dir, "says-no.sh", "printf '\\000\\000\\000\\037{\"type\":\"failed\",\"reason\":\"no\"}' >&3")},
       "refused to start: no"},
      {{"--binary",
        upgradetest::write_script(dir, "garbles.sh", "printf '\\000\\000\\000\\003abc' >&3; exec sleep 60")},
       "broke the handover protocol: handover message is not JSON"},
  };
  for (const auto& attempt : attempts) {
    const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket(), attempt.args);
    EXPECT_EQ(upgrade.exit_code, kExitUsage) << attempt.args.at(1) << ": " << upgrade.out << upgrade.err;
    EXPECT_NE(upgrade.err.find(attempt.reason), std::string::npos)
        << attempt.args.at(1) << ": " << upgrade.err;
    EXPECT_NE(upgrade.err.find("this process serves on"), std::string::npos) << upgrade.err;
    const json status = ctltest::status(old.control_socket());
    EXPECT_EQ(status.at("pid"), old.pid());
    EXPECT_EQ(status.at("state"), "running");
    EXPECT_EQ(harness::scalar(client, "SELECT 3"), "3");
    const PgConn another = harness::connect(old.conninfo());
    EXPECT_EQ(harness::scalar(another, "SELECT 4"), "4");
  }
  // Every failed attempt was killed, reaped and its channel closed (the client above is still open).
  EXPECT_TRUE(harness::wait_until([&] { return upgradetest::open_fds(old.control_socket()) == fds_before; }))
      << upgradetest::open_fds(old.control_socket()) << " descriptors, " << fds_before << " before";
}

// The same binary rejecting the configuration now in the file: the reason names the key and line.
TEST_F(Upgrade, AConfigurationTheNewProcessRejectsLeavesTheOldOneServing) {
  harness::Sluiced old(options());
  std::string text = ctltest::read_text(old.config_path());
  const auto drain = text.find("\"drain\"");
  ASSERT_NE(drain, std::string::npos) << text;
  text.insert(drain, "\"pool_size_typo\": 3,\n");
  ctltest::write_text(old.config_path(), text);
  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  EXPECT_EQ(upgrade.exit_code, kExitUsage) << upgrade.out << upgrade.err;
  EXPECT_NE(upgrade.err.find("refused to start"), std::string::npos) << upgrade.err;
  EXPECT_NE(upgrade.err.find("pool_size_typo"), std::string::npos) << upgrade.err;
  EXPECT_NE(upgrade.err.find(old.config_path() + ":"), std::string::npos) << upgrade.err;  // file:line
  EXPECT_EQ(ctltest::status(old.control_socket()).at("pid"), old.pid());
  const PgConn client = harness::connect(old.conninfo());
  EXPECT_EQ(harness::scalar(client, "SELECT 5"), "5");
}

// Two at once are refused, and so is one during a drain (a drain also calls off one under way).
TEST_F(Upgrade, RefusedWhileOneIsUnderWayAndDuringADrain) {
  harness::Sluiced old(options());
  const std::string slow = upgradetest::write_script(old.socket_dir(), "slow.sh", "exec sleep 60");
  auto first = std::async(std::launch::async, [&] {
    return upgradetest::sluicectl_upgrade(old.control_socket(), {"--binary", slow});
  });
  ASSERT_TRUE(harness::wait_until([&] {
    const json upgrade = ctltest::status(old.control_socket()).at("upgrade");
    return upgrade.is_object() && upgrade.at("state") == "starting";
  }));
  const auto second = upgradetest::sluicectl_upgrade(old.control_socket());
  EXPECT_EQ(second.exit_code, kExitUsage);
  EXPECT_NE(second.err.find("upgrade refused: an upgrade is already under way"), std::string::npos)
      << second.err;

  EXPECT_EQ(ctltest::control(old.control_socket(), {{"cmd", "drain"}}).value("ok", false), true);
  const auto called_off = first.get();
  EXPECT_EQ(called_off.exit_code, kExitUsage);
  EXPECT_NE(called_off.err.find("the new process was called off: a drain started"), std::string::npos)
      << called_off.err;
  const auto during_drain = upgradetest::sluicectl_upgrade(old.control_socket());
  EXPECT_EQ(during_drain.exit_code, kExitUsage);
  EXPECT_NE(during_drain.err.find("upgrade refused: the daemon is drain"), std::string::npos)
      << during_drain.err;
}

// A cancel request for a query still running on the old process reaches it through the listener,
// which the new process owns now.
TEST_F(Upgrade, ACancelThroughTheNewListenerStopsAQueryOnTheOldProcess) {
  harness::Sluiced old(options({{"workers", 2}}));
  const PgConn sleeper = harness::connect(old.conninfo());
  PGcancel* cancel = PQgetCancel(sleeper.get());
  ASSERT_NE(cancel, nullptr);
  ASSERT_EQ(PQsendQuery(sleeper.get(), "SELECT pg_sleep(30)"), 1);
  ASSERT_TRUE(harness::wait_until(
      [&] { return ctltest::status(old.control_socket()).at("clients").at("active").get<int>() == 1; }));

  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.err;
  NewProcess successor(expect_handed_over(old, upgrade));
  ASSERT_NE(successor.pid(), old.pid());

  const auto started = std::chrono::steady_clock::now();
  char error[256];
  ASSERT_EQ(PQcancel(cancel, error, sizeof error), 1) << error;
  PQfreeCancel(cancel);
  const auto result = ctltest::await_result(sleeper, 10s);
  ASSERT_TRUE(result.has_value()) << "the query was not cancelled";
  EXPECT_EQ(ctltest::sqlstate(result->get()), "57014");
  EXPECT_STREQ(PQresultErrorField(result->get(), PG_DIAG_MESSAGE_PRIMARY),
               "canceling statement due to user request");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s)
      << "cancelled by the drain deadline, not the request";
  const auto exit = old.wait_exit(20s);
  EXPECT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0);
}

}  // namespace
