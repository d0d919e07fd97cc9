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

std::string write_script(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
  ::chmod(path.c_str(), 0755);
  return path;
}

}  // namespace upgradetest
