// Helpers for the live-upgrade tests: the new sluiced a live upgrade starts, which becomes this
// test binary's child once the old one exits (the binary makes itself a child subreaper), and
// sluicectl upgrade.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

namespace upgradetest {

// Makes orphaned descendants (a new sluiced whose parent, the old one, has exited) children of
// this process, so that a test can wait for them and see their exit status.
void become_subreaper();

// The fixture of the live-upgrade suites: this binary reaps the new processes.
class UpgradeSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { become_subreaper(); }
};

// The sluiced a live upgrade started. Stopped (SIGTERM, then SIGKILL) on destruction; records a
// test failure if it does not exit 0 when stopped.
class NewProcess {
 public:
  explicit NewProcess(pid_t pid) : pid_(pid) {}
  ~NewProcess();
  NewProcess(const NewProcess&) = delete;
  NewProcess& operator=(const NewProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  // SIGTERM and its wait status (nullopt if it outlived `timeout`). Call once its parent has exited.
  std::optional<int> stop(std::chrono::milliseconds timeout);

 private:
  pid_t pid_;
  bool stopped_ = false;
};

// Plays the old sluiced of a live upgrade for a new one (harness::Sluiced with --upgrade-fd),
// so that a test can hand it what a real old process never would. The handshake passes no
// listening sockets (the new process binds its own) and returns once the new process serves.
class FakePredecessor {
 public:
  explicit FakePredecessor(harness::SluicedConfig config);
  ~FakePredecessor();
  FakePredecessor(const FakePredecessor&) = delete;
  FakePredecessor& operator=(const FakePredecessor&) = delete;

  harness::Sluiced& successor() { return *successor_; }
  // Sends one handover message with `descriptors` attached (this process keeps its copies).
  void send(const nlohmann::json& message, const std::vector<int>& descriptors = {});
  // The next message from the new process, or nullopt if none came within `timeout`.
  std::optional<nlohmann::json> receive(std::chrono::milliseconds timeout);

 private:
  int channel_ = -1;
  std::string buffer_;  // bytes received and not yet a whole message
  std::unique_ptr<harness::Sluiced> successor_;
};

// A moved client's state as the old process sends it (frontend/moved_client.h): `user` on
// `database`, at rest, no server, no statements, transport "unix" or "tcp".
nlohmann::json moved_client_state(const std::string& user, const std::string& database,
                                  const std::string& transport = "unix");

// `sluicectl -s SOCKET upgrade ARGS...`.
ctltest::ProcessResult sluicectl_upgrade(const std::string& control_socket,
                                         const std::vector<std::string>& args = {});

// The open descriptors of `pid`, as its status reports them.
int open_fds(const std::string& control_socket);

// Right after `sluicectl upgrade`: the answer and `status` name the new process, which names the
// old one. The new process's pid.
pid_t expect_handed_over(const harness::Sluiced& old, const ctltest::ProcessResult& upgrade);

// pgbench's database (pgbench -i -s 1), made afresh; fails the test (fatally) when it cannot.
inline constexpr const char* kBenchDatabase = "upgrade_bench";
void make_bench_database();
// pgbench against `daemon`'s socket and kBenchDatabase, with `args`.
harness::Captured pgbench(const harness::Sluiced& daemon, const std::vector<std::string>& args);
// It exited 0 with "number of failed transactions: 0" and no error.
void expect_no_failure(const harness::Captured& run, const std::string& what);

// An executable shell script in `dir`, for a "new binary" that misbehaves.
std::string write_script(const std::string& dir, const std::string& name, const std::string& body);

}  // namespace upgradetest
