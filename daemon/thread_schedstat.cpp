#include "daemon/thread_schedstat.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <ctime>

namespace sluice::daemon {
namespace {

// One unsigned number and the space or newline after it; false at anything else.
bool take_number(std::string_view& text, std::uint64_t& number, char after) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc{} || end == text.data() + text.size() || *end != after) return false;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()) + 1);
  return true;
}

}  // namespace

std::optional<SchedTimes> parse_schedstat(std::string_view text) {
  SchedTimes times;
  std::uint64_t timeslices = 0;
  if (!take_number(text, times.ran_ns, ' ') || !take_number(text, times.waited_ns, ' ') ||
      !take_number(text, timeslices, '\n') || !text.empty())
    return std::nullopt;
  // A thread that reads it has run: "0 0 0" is a kernel whose scheduler accounting is off.
  if (timeslices == 0) return std::nullopt;
  return times;
}

std::optional<SchedTimes> read_thread_schedstat() {
  // The file shows the run time as of the thread's last scheduler update, up to a tick behind;
  // asking for the thread's CPU clock brings it up to date first.
  timespec cpu{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
  const int fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::array<char, 96> buffer{};
  const ssize_t n = ::read(fd, buffer.data(), buffer.size());
  ::close(fd);
  if (n <= 0) return std::nullopt;
  return parse_schedstat(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
}

}  // namespace sluice::daemon
