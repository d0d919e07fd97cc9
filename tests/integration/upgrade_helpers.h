// Helpers for the live-upgrade tests: the new sluiced a live upgrade starts, which becomes this
// test binary's child once the old one exits (the binary makes itself a child subreaper), and
// sluicectl upgrade.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"

namespace upgradetest {

// Makes orphaned descendants (a new sluiced whose parent, the old one, has exited) children of
// this process, so that a test can wait for them and see their exit status.
void become_subreaper();

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

// `sluicectl -s SOCKET upgrade ARGS...`.
ctltest::ProcessResult sluicectl_upgrade(const std::string& control_socket,
                                         const std::vector<std::string>& args = {});

// The open descriptors of `pid`, as its status reports them.
int open_fds(const std::string& control_socket);

// An executable shell script in `dir`, for a "new binary" that misbehaves.
std::string write_script(const std::string& dir, const std::string& name, const std::string& body);

}  // namespace upgradetest
