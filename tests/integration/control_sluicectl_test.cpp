// sluicectl against a real sluiced (DESIGN §4, §7; issue 3 §3): human tables, --json, the socket
// from -s / $SLUICE_CONTROL, and its exit codes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

#ifndef SLUICECTL_PATH
#error "SLUICECTL_PATH must name the sluicectl binary (CMakeLists.txt defines it)"
#endif

namespace {

using harness::PgConn;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitNotRunning = 3;
constexpr int kExitPermissionDenied = 4;

ctltest::ProcessResult sluicectl(const std::vector<std::string>& args, ctltest::ProcessOptions options = {}) {
  std::vector<std::string> argv = {SLUICECTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  // The tests choose the socket; an inherited $SLUICE_CONTROL must not.
  if (std::none_of(options.env.begin(), options.env.end(),
                   [](const std::string& e) { return e.starts_with("SLUICE_CONTROL="); })) {
    options.unset_env.emplace_back("SLUICE_CONTROL");
  }
  return ctltest::run_process(argv, options);
}

std::string describe(const ctltest::ProcessResult& result) {
  return "exit " + std::to_string(result.exit_code) + "\n--- stdout ---\n" + result.out + "--- stderr ---\n" +
         result.err;
}

class ControlSluicectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client = harness::connect(daemon.conninfo());
    harness::exec_ok(client, "BEGIN");
    backend_pid = harness::scalar(client, "SELECT pg_backend_pid()");
  }

  harness::Sluiced daemon;
  PgConn client;  // inside a transaction: an active client on an active server
  std::string backend_pid;
};

TEST_F(ControlSluicectlTest, StatusPrintsAHumanTable) {
  const auto result = sluicectl({"-s", daemon.control_socket(), "status"});
  ASSERT_EQ(result.exit_code, kExitOk) << describe(result);
  EXPECT_TRUE(json::parse(result.out, nullptr, false).is_discarded()) << "a table, not JSON:\n" << result.out;
  for (const char* label :
       {"state", "version", "pid", "uptime", "workers", "clients", "servers", "drain", "teardown"}) {
    EXPECT_NE(result.out.find(label), std::string::npos) << "no '" << label << "' line:\n" << result.out;
  }
  EXPECT_NE(result.out.find("running"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find(std::to_string(daemon.pid())), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("1 active"), std::string::npos) << "the client in a transaction:\n" << result.out;
  EXPECT_EQ(result.err, "");
}

TEST_F(ControlSluicectlTest, OtherViewsPrintTables) {
  const auto servers = sluicectl({"-s", daemon.control_socket(), "servers"});
  ASSERT_EQ(servers.exit_code, kExitOk) << describe(servers);
  EXPECT_NE(servers.out.find("BACKEND_PID"), std::string::npos) << servers.out;
  EXPECT_NE(servers.out.find(backend_pid), std::string::npos) << "the active server's backend pid:\n"
                                                              << servers.out;
  for (const char* command : {"pools", "clients", "teardown"}) {
    SCOPED_TRACE(command);
    const auto result = sluicectl({"-s", daemon.control_socket(), command});
    EXPECT_EQ(result.exit_code, kExitOk) << describe(result);
    EXPECT_FALSE(result.out.empty());
    EXPECT_TRUE(json::parse(result.out, nullptr, false).is_discarded()) << result.out;
  }
  const auto pools = sluicectl({"-s", daemon.control_socket(), "pools"});
  EXPECT_NE(pools.out.find("postgres"), std::string::npos) << pools.out;
  const auto teardown = sluicectl({"-s", daemon.control_socket(), "teardown"});
  for (const char* outcome : {"clean", "rollback", "cancel", "discard"}) {
    EXPECT_NE(teardown.out.find(outcome), std::string::npos) << teardown.out;
  }
}

TEST_F(ControlSluicectlTest, JsonStatusParses) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-s", daemon.control_socket(), "--json", "status"},
        std::vector<std::string>{"-s", daemon.control_socket(), "status", "--json"}}) {
    const auto result = sluicectl(args);
    ASSERT_EQ(result.exit_code, kExitOk) << describe(result);
    const json answer = json::parse(result.out, nullptr, false);
    ASSERT_FALSE(answer.is_discarded()) << "not JSON:\n" << result.out;
    EXPECT_EQ(answer.value("state", ""), "running") << answer.dump();
    EXPECT_EQ(answer.value("pid", 0LL), daemon.pid()) << answer.dump();
    EXPECT_EQ(answer["clients"].value("active", -1), 1) << answer.dump();
  }
  const auto servers = sluicectl({"-s", daemon.control_socket(), "--json", "servers"});
  ASSERT_EQ(servers.exit_code, kExitOk) << describe(servers);
  const json rows = json::parse(servers.out, nullptr, false);
  ASSERT_TRUE(rows.contains("servers")) << servers.out;
}

TEST_F(ControlSluicectlTest, SluiceControlEnvironmentIsHonoured) {
  const auto from_env =
      sluicectl({"--json", "status"}, {.env = {"SLUICE_CONTROL=" + daemon.control_socket()}});
  ASSERT_EQ(from_env.exit_code, kExitOk) << describe(from_env);
  const json answer = json::parse(from_env.out, nullptr, false);
  EXPECT_EQ(answer.value("pid", 0LL), daemon.pid()) << from_env.out;

  // -s wins over the environment.
  const auto option_wins = sluicectl({"-s", daemon.control_socket(), "--json", "status"},
                                     {.env = {"SLUICE_CONTROL=" + daemon.socket_dir() + "/nowhere.sock"}});
  EXPECT_EQ(option_wins.exit_code, kExitOk) << describe(option_wins);

  // And the environment is what sluicectl uses without -s: a bad one fails.
  const auto bad_env =
      sluicectl({"status"}, {.env = {"SLUICE_CONTROL=" + daemon.socket_dir() + "/nowhere.sock"}});
  EXPECT_EQ(bad_env.exit_code, kExitNotRunning) << describe(bad_env);
  EXPECT_NE(bad_env.err.find("nowhere.sock"), std::string::npos) << describe(bad_env);
}

TEST_F(ControlSluicectlTest, PermissionDeniedExitCode) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run sluicectl as nobody";
  // Reachable on the file system, so the daemon's SO_PEERCRED check is what refuses.
  ASSERT_EQ(::chmod(daemon.socket_dir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(daemon.control_socket().c_str(), 0666), 0);
  const auto refused =
      sluicectl({"-s", daemon.control_socket(), "status"}, {.run_as = ctltest::nobody_uid()});
  EXPECT_EQ(refused.exit_code, kExitPermissionDenied) << describe(refused);
  EXPECT_NE(refused.err.find("permission denied"), std::string::npos) << describe(refused);
}

TEST(ControlSluicectlNoDaemonTest, MissingSocketExitsThree) {
  harness::TempDir dir("sluice-ctl");
  const auto result = sluicectl({"-s", dir.path() + "/control.sock", "status"});
  EXPECT_EQ(result.exit_code, kExitNotRunning) << describe(result);
  EXPECT_NE(result.err.find("daemon not running"), std::string::npos) << describe(result);
  EXPECT_EQ(result.out, "");
}

TEST(ControlSluicectlNoDaemonTest, UnknownSubcommandExitsTwo) {
  harness::TempDir dir("sluice-ctl");
  const auto unknown = sluicectl({"-s", dir.path() + "/control.sock", "frobnicate"});
  EXPECT_EQ(unknown.exit_code, kExitUsage) << describe(unknown);
  const auto none = sluicectl({"-s", dir.path() + "/control.sock"});
  EXPECT_EQ(none.exit_code, kExitUsage) << "no subcommand: " << describe(none);
  const auto bad_timeout = sluicectl({"-s", dir.path() + "/control.sock", "drain", "--timeout", "soon"});
  EXPECT_EQ(bad_timeout.exit_code, kExitUsage) << describe(bad_timeout);
}

}  // namespace
