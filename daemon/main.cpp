// sluiced: parse the command line, load the configuration, run the daemon.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "common/log.h"
#include "common/version.h"
#include "config/config_loader.h"
#include "daemon/daemon.h"
#include "daemon/upgrade/predecessor.h"

namespace {

// Started with stdin, stdout or stderr closed, the next descriptor opened
// (libuv's wake-up pipe, the epoll fd, a client socket) would take that number
// and log lines or stray output would land in it. /dev/null holds the place.
void occupy_standard_descriptors() {
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    const int null_fd = ::open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
    if (null_fd >= 0 && null_fd != fd) {
      ::dup2(null_fd, fd);
      ::close(null_fd);
    }
  }
}

int run(int argc, char** argv) {
  CLI::App app{"sluiced: a PostgreSQL connection pooler"};
  std::string config_path;
  bool check_only = false;
  bool show_version = false;
  std::optional<int> upgrade_fd;
  app.add_option("-c,--config", config_path, "configuration file (JSON, comments allowed)");
  app.add_flag("--check", check_only, "validate the configuration and exit");
  app.add_flag("--version", show_version, "print the version and exit");
  // Set by a running sluiced that starts this one as its live upgrade (daemon/upgrade/).
  app.add_option("--upgrade-fd", upgrade_fd, "the handover channel from the sluiced being replaced")
      ->group("");
  CLI11_PARSE(app, argc, argv);

  if (show_version) {
    std::printf("sluiced %s\n", sluice::kVersion);
    return 0;
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "sluiced: a configuration file is required (-c FILE)\n");
    return 2;
  }
  auto config = sluice::config::load_config_file(config_path);
  if (!config) {
    std::fprintf(stderr, "sluiced: %s\n", config.error().c_str());
    if (upgrade_fd) sluice::daemon::upgrade::report_startup_failure(*upgrade_fd, config.error());
    return 1;
  }
  if (check_only) {
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  sluice::log::set_level(sluice::log::level_from_name(config->log_level));
  std::unique_ptr<sluice::daemon::upgrade::Predecessor> predecessor;
  if (upgrade_fd) {
    auto connected = sluice::daemon::upgrade::Predecessor::connect(*upgrade_fd);
    if (!connected) {
      std::fprintf(stderr, "sluiced: upgrade: %s\n", connected.error().c_str());
      sluice::daemon::upgrade::report_startup_failure(*upgrade_fd, connected.error());
      return 1;
    }
    predecessor = std::move(*connected);
  }
  int status = 0;
  {
    sluice::daemon::Daemon daemon(std::move(*config), config_path, std::move(predecessor));
    status = daemon.run();
  }
  sluice::log::flush(std::chrono::seconds(2));  // the last records; a stalled stderr cannot hold the exit
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  occupy_standard_descriptors();
  // Nothing should throw out of the daemon; if something does, say so instead of aborting silently.
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sluiced: fatal: %s\n", error.what());
  } catch (...) {
    std::fprintf(stderr, "sluiced: fatal: unknown exception\n");
  }
  return 70;  // EX_SOFTWARE
}
