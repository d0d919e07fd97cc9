// A thread's time on a CPU and waiting on a run queue for one, as the kernel's
// scheduler accounts it (/proc/thread-self/schedstat, nanoseconds). A loop turn
// that held the loop for long either did its own work (it ran), was kept off
// the CPU by other threads, the machine's or sluiced's own (it waited), or
// blocked: the two counts tell which.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::daemon {

struct SchedTimes {
  std::uint64_t ran_ns = 0;
  std::uint64_t waited_ns = 0;
};

// The file's "<ran> <waited> <timeslices>\n"; nullopt for anything else, and for "0 0 0".
[[nodiscard]] std::optional<SchedTimes> parse_schedstat(std::string_view text);

// The calling thread's (thread-self is resolved at open): opened, read and closed, so that no
// descriptor stays open (the fd-leak tests, a live upgrade's hand-over). nullopt where the kernel
// gives no such file.
[[nodiscard]] std::optional<SchedTimes> read_thread_schedstat();

}  // namespace sluice::daemon
