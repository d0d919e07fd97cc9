// sd_notify(3) without libsystemd: one datagram per state change to the
// AF_UNIX socket named by $NOTIFY_SOCKET (DESIGN §5). Outside systemd every
// call is a no-op. Sending never blocks and never fails the daemon: systemd
// may be slow or gone, and the pooler must keep serving either way.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::daemon {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET (a path, or an abstract name when it starts with '@'),
  // WATCHDOG_USEC, and WATCHDOG_PID (the watchdog is ours only if it names getpid()).
  SystemdNotifier();
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;
  SystemdNotifier(SystemdNotifier&&) = delete;
  SystemdNotifier& operator=(SystemdNotifier&&) = delete;

  // Whether systemd is listening, that is, whether the calls below send anything.
  [[nodiscard]] bool enabled() const { return fd_ >= 0; }

  void ready();      // READY=1: listening; also ends a reload
  void reloading();  // RELOADING=1 with MONOTONIC_USEC (systemd 253+ wants both); send ready() when done
  void stopping();   // STOPPING=1: drain has started
  // MAINPID=<pid> and READY=1: a live upgrade's new process is the service's main process now
  // (the unit needs NotifyAccess=all to take it from a process systemd did not start).
  void ready_as_main_process(pid_t pid);
  // A live upgrade's old process, once the new one serves: the new one speaks for the service.
  void stop_notifying();
  // STATUS=<line>: a one-line summary for `systemctl status`. Line breaks become
  // spaces (a newline would start another assignment); cut to fit one datagram.
  void status(std::string_view line);
  void watchdog();  // WATCHDOG=1: the loop is alive

  // How often to call watchdog(): half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
  // recommends, so one late tick is not yet a restart. Empty when there is no watchdog.
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval() const;

 private:
  void send(std::string_view message);

  int fd_ = -1;
  sockaddr_un address_{};
  socklen_t address_size_ = 0;
  std::string socket_name_;  // as given in NOTIFY_SOCKET, for log lines
  std::optional<std::chrono::microseconds> watchdog_timeout_;
  bool failing_ = false;  // the last send failed: log again only once it recovers
};

}  // namespace sluice::daemon
