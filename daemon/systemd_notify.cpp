#include "daemon/systemd_notify.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/log.h"

namespace sluice::daemon {

namespace {

// systemd reads notifications into a PIPE_BUF-sized buffer and drops longer ones.
constexpr std::size_t kMaxMessage = 4096;

std::optional<std::string_view> environment(const char* name) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read once, at startup
  if (value == nullptr) return std::nullopt;
  return std::string_view(value);
}

template <class Number>
std::optional<Number> parse_number(std::string_view text) {
  Number number{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return number;
}

// WATCHDOG_USEC, unless WATCHDOG_PID says the watchdog belongs to another
// process (a parent that exec'd us without clearing it, say).
std::optional<std::chrono::microseconds> watchdog_timeout_from_environment() {
  const auto usec_text = environment("WATCHDOG_USEC");
  if (!usec_text) return std::nullopt;
  const auto usec = parse_number<std::uint64_t>(*usec_text);
  if (!usec || *usec == 0 || *usec > static_cast<std::uint64_t>(std::chrono::microseconds::max().count())) {
    log::warning("systemd: ignoring WATCHDOG_USEC='", *usec_text, "': not a positive number of microseconds");
    return std::nullopt;
  }
  if (const auto pid_text = environment("WATCHDOG_PID")) {
    const auto pid = parse_number<pid_t>(*pid_text);
    if (!pid || *pid != ::getpid()) return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<std::chrono::microseconds::rep>(*usec));
}

std::uint64_t monotonic_usec() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1000000U + static_cast<std::uint64_t>(now.tv_nsec) / 1000U;
}

// `text` cut to at most `limit` bytes without splitting a UTF-8 sequence.
std::string_view cut_utf8(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) return text;
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) --end;  // a continuation byte
  return text.substr(0, end);
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
  const auto name = environment("NOTIFY_SOCKET");
  if (!name || name->empty()) return;
  socket_name_ = std::string(*name);
  // '@' is an abstract name: a leading NUL and no terminator. Anything else but
  // an absolute path (vsock:, systemd 254+) is a transport we do not speak.
  const bool abstract = name->front() == '@';
  if (!abstract && name->front() != '/') {
    log::warning("systemd: NOTIFY_SOCKET='", *name,
                 "' is neither an absolute path nor '@name'; not notifying");
    return;
  }
  // Path sockets need room for their terminating NUL; abstract names do not.
  const std::size_t room = sizeof address_.sun_path - (abstract ? 0 : 1);
  if (name->size() > room) {
    log::warning("systemd: NOTIFY_SOCKET='", *name, "' is too long for a socket address; not notifying");
    return;
  }
  address_.sun_family = AF_UNIX;
  std::memcpy(address_.sun_path, name->data(), name->size());
  if (abstract) address_.sun_path[0] = '\0';
  address_size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name->size() + (abstract ? 0 : 1));

  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    log::warning("systemd: cannot create the notification socket: ", std::strerror(errno), "; not notifying");
    return;
  }
  watchdog_timeout_ = watchdog_timeout_from_environment();
}

SystemdNotifier::~SystemdNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

void SystemdNotifier::ready() { send("READY=1"); }

void SystemdNotifier::reloading() { send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec())); }

void SystemdNotifier::stopping() { send("STOPPING=1"); }

void SystemdNotifier::ready_as_main_process(pid_t pid) {
  send("MAINPID=" + std::to_string(pid) + "\nREADY=1");
}

void SystemdNotifier::stop_notifying() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void SystemdNotifier::status(std::string_view line) {
  if (!enabled()) return;
  constexpr std::string_view kPrefix = "STATUS=";
  std::string message(kPrefix);
  message.append(cut_utf8(line, kMaxMessage - kPrefix.size()));
  for (std::size_t i = kPrefix.size(); i < message.size(); ++i) {
    const auto byte = static_cast<unsigned char>(message[i]);
    if (byte < 0x20U || byte == 0x7FU) message[i] = ' ';  // newlines and other controls
  }
  send(message);
}

void SystemdNotifier::watchdog() { send("WATCHDOG=1"); }

std::optional<std::chrono::microseconds> SystemdNotifier::watchdog_interval() const {
  if (!enabled() || !watchdog_timeout_) return std::nullopt;
  return *watchdog_timeout_ / 2;
}

void SystemdNotifier::send(std::string_view message) {
  if (!enabled()) return;
  ssize_t sent = -1;
  do {
    sent = ::sendto(fd_, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&address_), address_size_);
  } while (sent < 0 && errno == EINTR);
  if (sent >= 0) {
    if (failing_) log::info("systemd: notifications to ", socket_name_, " go through again");
    failing_ = false;
    return;
  }
  // EAGAIN: systemd's queue is full; ECONNREFUSED/ENOENT: it is gone. Either way, carry on.
  if (!failing_) {
    log::warning("systemd: cannot notify ", socket_name_, ": ", std::strerror(errno),
                 "; further failures are not logged until one succeeds");
  }
  failing_ = true;
}

}  // namespace sluice::daemon
