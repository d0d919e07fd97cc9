// Watches the loop's own health: how late a periodic timer fires (lag) and
// how long one turn's callbacks hold the loop (slow callbacks, DESIGN §2).
// A turn's busy time runs from the kernel poll's return (the SocketReactor
// stamps libuv's loop time then, to the millisecond) to the next poll, so it
// covers the socket callbacks and libuv's turn after them (timers, libuv's own
// I/O, close callbacks). libuv's idle-time metric would say the same at the cost
// of a second epoll_wait and a mutex on every wait.
// A slow turn's warning also says how the loop's thread spent the stretch since
// the schedstat reading taken at the end of the last tick's turn (on the loop's
// own thread): on a CPU (its own work), waiting for one (for other threads, the
// machine's or sluiced's own), or neither (blocked, or asleep in the poll before
// the turn). Four readings a second, none per turn: no cost on the hot path.
// The loop's SocketReactor calls it around each kernel poll.
#pragma once

#include <uv.h>

#include <cstdint>
#include <optional>

#include "daemon/thread_schedstat.h"
#include "metrics/latency_histogram.h"
#include "net/socket_reactor.h"

namespace sluice::daemon {

// What the last slow turn's warning said.
struct SlowTurn {
  std::uint64_t held_ns = 0;
  // The stretch from the last schedstat reading to the turn's end, and how the thread spent
  // it; 0 and nullopt before the first reading, or where the kernel gives none.
  std::uint64_t stretch_ns = 0;
  std::optional<SchedTimes> spent;
};

class LoopMonitor final : net::SocketReactor::TurnHook {
 public:
  // On a loop with a SocketReactor.
  LoopMonitor(uv_loop_t* loop, int slow_callback_ms);
  ~LoopMonitor();
  LoopMonitor(const LoopMonitor&) = delete;
  LoopMonitor& operator=(const LoopMonitor&) = delete;

  void set_slow_callback_ms(int ms) { slow_callback_ns_ = static_cast<std::uint64_t>(ms) * 1000000; }
  [[nodiscard]] double lag_ms() const { return static_cast<double>(last_lag_ns_) / 1e6; }
  [[nodiscard]] double max_lag_ms() const { return static_cast<double>(lag_histogram_.max()) / 1e6; }
  [[nodiscard]] std::uint64_t slow_callbacks() const { return slow_callbacks_; }
  // Every tick's lag, for /metrics.
  [[nodiscard]] const metrics::LatencyHistogram& lag_histogram() const { return lag_histogram_; }
  // Turns of the loop (kernel polls): with the releases, how much work one wake-up serves.
  [[nodiscard]] std::uint64_t turns() const { return turns_; }
  [[nodiscard]] const std::optional<SlowTurn>& last_slow_turn() const { return last_slow_turn_; }

 private:
  static constexpr std::uint64_t kTickMs = 250;

  void on_tick();
  // The turn's socket callbacks are done (libuv's check phase did this before).
  void after_poll() override;
  // The kernel poll is next (libuv's prepare phase).
  void before_poll() override;
  // Out of the turn's path: only a slow turn gets here.
  [[gnu::cold, gnu::noinline]] void report_slow_turn(std::uint64_t held, std::uint64_t now);
  // Out of the turn's path too: at the first turn's end, then once per tick.
  [[gnu::cold, gnu::noinline]] void read_schedstat(std::uint64_t now);

  uv_loop_t* loop_;
  net::SocketReactor& reactor_;
  // A heap handle: its close callback may run after this object is gone.
  uv_timer_t* timer_;
  std::uint64_t slow_callback_ns_;
  std::uint64_t expected_tick_ns_ = 0;
  std::uint64_t poll_woke_ns_ = 0;  // when the last kernel poll returned; 0 once its turn is judged
  std::uint64_t last_lag_ns_ = 0;
  std::uint64_t slow_callbacks_ = 0;
  std::uint64_t turns_ = 0;
  std::optional<SlowTurn> last_slow_turn_;
  // A reading is due at the end of the turn: the first one (a slow start-up turn gets a
  // breakdown too), then each tick's.
  bool schedstat_due_ = true;
  std::uint64_t schedstat_read_ns_ = 0;
  std::optional<SchedTimes> schedstat_at_read_;
  // Last, after the fields each turn touches, so that they share a page (the histogram is 7.8 KB).
  metrics::LatencyHistogram lag_histogram_;
};

}  // namespace sluice::daemon
