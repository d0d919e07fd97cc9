#include "tests/integration/upgrade_helpers.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

#ifndef SLUICECTL_PATH
#error "SLUICECTL_PATH must name the sluicectl binary (CMakeLists.txt defines it)"
#endif

namespace upgradetest {

void become_subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

std::optional<int> NewProcess::stop(std::chrono::milliseconds timeout) {
  stopped_ = true;
  ::kill(pid_, SIGTERM);
  std::optional<int> status;
  harness::wait_until(
      [&] {
        int raw = 0;
        if (::waitpid(pid_, &raw, WNOHANG) == pid_) status = raw;
        return status.has_value();
      },
      timeout);
  return status;
}

NewProcess::~NewProcess() {
  if (stopped_) {
    ::kill(pid_, SIGKILL);  // gone already unless stop() timed out
    ::waitpid(pid_, nullptr, WNOHANG);
    return;
  }
  const auto status = stop(std::chrono::seconds(15));
  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "the new sluiced (pid " << pid_ << ") did not exit 0 on SIGTERM";
  if (!status) {
    ::kill(pid_, SIGKILL);
    harness::wait_until([this] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; });
  }
}

ctltest::ProcessResult sluicectl_upgrade(const std::string& control_socket,
                                         const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SLUICECTL_PATH, "-s", control_socket, "upgrade"};
  argv.insert(argv.end(), args.begin(), args.end());
  ctltest::ProcessOptions options;
  options.unset_env.emplace_back("SLUICE_CONTROL");
  options.timeout = std::chrono::seconds(60);
  return ctltest::run_process(argv, options);
}

int open_fds(const std::string& control_socket) {
  return ctltest::status(control_socket).at("fds").get<int>();
}

pid_t expect_handed_over(const harness::Sluiced& old, const ctltest::ProcessResult& upgrade) {
  using nlohmann::json;
  const json status = ctltest::status(old.control_socket());
  const auto new_pid = status.at("pid").get<pid_t>();
  EXPECT_NE(new_pid, old.pid()) << status.dump();
  // Null already when the old process had nothing left to wait for and has exited.
  if (const json& block = status.at("upgrade"); !block.is_null()) {
    EXPECT_EQ(block.value("role", ""), "successor") << status.dump();
    EXPECT_EQ(block.value("old_pid", 0), old.pid()) << status.dump();
  }
  EXPECT_NE(upgrade.out.find("pid " + std::to_string(new_pid) + ") accepts every new connection"),
            std::string::npos)
      << upgrade.out;
  return new_pid;
}

namespace {

std::string pgbench_path() {
  if (const char* bindir = std::getenv("SLUICE_PG_BINDIR"); bindir != nullptr && *bindir != '\0') {
    return std::string(bindir) + "/pgbench";
  }
  return "/usr/lib/postgresql/15/bin/pgbench";
}

}  // namespace

void make_bench_database() {
  ASSERT_EQ(access(pgbench_path().c_str(), X_OK), 0) << "no " << pgbench_path();
  const harness::PgConn admin = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(admin, std::string("DROP DATABASE IF EXISTS ") + kBenchDatabase + " WITH (FORCE)");
  harness::exec_ok(admin, std::string("CREATE DATABASE ") + kBenchDatabase);
  const auto init = harness::run_capture(
      {pgbench_path(), "-h", harness::postgres().socket_dir(), "-p",
       std::to_string(harness::postgres().port()), "-i", "-s", "1", "-q", kBenchDatabase},
      std::chrono::seconds(60));
  ASSERT_TRUE(init.succeeded()) << init.err;
}

harness::Captured pgbench(const harness::Sluiced& daemon, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {pgbench_path(), "-h", daemon.socket_dir(), "-p",
                                   std::to_string(daemon.port())};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.emplace_back(kBenchDatabase);
  return harness::run_capture(argv, std::chrono::seconds(60));
}

void expect_no_failure(const harness::Captured& run, const std::string& what) {
  EXPECT_TRUE(run.succeeded() && run.out.find("number of failed transactions: 0 ") != std::string::npos &&
              run.err.find("error") == std::string::npos)
      << what << ": " << run.describe() << "\nstdout:\n"
      << run.out << "stderr:\n"
      << run.err;
}

std::string write_script(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
  return path;
}

}  // namespace upgradetest
