#include "daemon/loop_monitor.h"

#include <string>

#include "common/log.h"

namespace sluice::daemon {
namespace {

constexpr std::uint64_t kNsPerMs = 1000000;  // the loop's clocks: uv_hrtime in ns, uv_now in ms

std::string where_the_time_went(const SlowTurn& turn) {
  if (!turn.spent) return "";
  return "; in the last " + std::to_string(turn.stretch_ns / kNsPerMs) + " ms its thread ran " +
         std::to_string(turn.spent->ran_ns / kNsPerMs) + " ms and waited " +
         std::to_string(turn.spent->waited_ns / kNsPerMs) +
         " ms for a CPU (the rest it was blocked or asleep in the poll)";
}

}  // namespace

LoopMonitor::LoopMonitor(uv_loop_t* loop, int slow_callback_ms)
    : loop_(loop), reactor_(net::SocketReactor::of(loop)), timer_(new uv_timer_t{}) {
  set_slow_callback_ms(slow_callback_ms);
  uv_timer_init(loop, timer_);
  timer_->data = this;
  // Monitoring alone must not keep the loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  expected_tick_ns_ = uv_hrtime() + kTickMs * kNsPerMs;
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<LoopMonitor*>(t->data)->on_tick(); }, kTickMs, kTickMs);
  reactor_.add_hook(this);
}

LoopMonitor::~LoopMonitor() {
  reactor_.remove_hook(this);
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

void LoopMonitor::on_tick() {
  const std::uint64_t now = uv_hrtime();
  last_lag_ns_ = now > expected_tick_ns_ ? now - expected_tick_ns_ : 0;
  lag_histogram_.record(last_lag_ns_);
  expected_tick_ns_ = now + kTickMs * kNsPerMs;
  // Not now: a tick runs inside a turn, which may be the slow one. The reading waits for its end.
  schedstat_due_ = true;
}

void LoopMonitor::after_poll() {
  // No clock read here: the reactor stamped libuv's loop time when the kernel poll returned, and
  // before_poll's one read closes the turn (one read per turn, not two).
  poll_woke_ns_ = uv_now(loop_) * kNsPerMs;
}

void LoopMonitor::before_poll() {
  ++turns_;
  if (poll_woke_ns_ == 0 && !schedstat_due_) return;  // no poll to judge, no reading due
  const std::uint64_t now = uv_hrtime();
  if (poll_woke_ns_ != 0) {
    const std::uint64_t held = now > poll_woke_ns_ ? now - poll_woke_ns_ : 0;
    poll_woke_ns_ = 0;
    if (held >= slow_callback_ns_) [[unlikely]]
      report_slow_turn(held, now);
  }
  if (schedstat_due_) [[unlikely]]
    read_schedstat(now);
}

void LoopMonitor::report_slow_turn(std::uint64_t held, std::uint64_t now) {
  ++slow_callbacks_;
  SlowTurn turn{.held_ns = held, .stretch_ns = 0, .spent = std::nullopt};
  const auto times = schedstat_at_read_ ? read_thread_schedstat() : std::nullopt;
  if (times && times->ran_ns >= schedstat_at_read_->ran_ns &&
      times->waited_ns >= schedstat_at_read_->waited_ns) {
    turn.stretch_ns = now - schedstat_read_ns_;
    turn.spent = SchedTimes{.ran_ns = times->ran_ns - schedstat_at_read_->ran_ns,
                            .waited_ns = times->waited_ns - schedstat_at_read_->waited_ns};
  }
  log::warning("slow callback: the loop was held for ", held / kNsPerMs,
               " ms (diagnostics.slow_callback_ms is ", slow_callback_ns_ / kNsPerMs, ")",
               where_the_time_went(turn));
  last_slow_turn_ = turn;
}

void LoopMonitor::read_schedstat(std::uint64_t now) {
  schedstat_due_ = false;
  schedstat_at_read_ = read_thread_schedstat();
  schedstat_read_ns_ = now;
}

}  // namespace sluice::daemon
