// The time of a loop turn's I/O, read once per turn. The common path stamps a transaction six to
// twenty times (its states, its queueing, its query and transaction times), and a clock read costs
// about 30 ns here: more than the rest of a state change. A turn's socket callbacks (those of
// its SocketReactor) share the first read, as PgBouncer's cached time does: a stamp is late by what
// the turn did before it, usually microseconds, at most the turn's length (loop.slow_callbacks
// counts the long ones). Outside them (libuv's callbacks: timers, libpq's connects; shutdown; a
// thread with no reactor) every call reads the clock, and so do release durations (the teardown
// SLA).
#pragma once

#include <chrono>

namespace sluice::net::turn_clock {

using Clock = std::chrono::steady_clock;

// The clock, as first read in this turn's socket callbacks.
[[nodiscard]] Clock::time_point now();
// Called by the SocketReactor right before its kernel poll and once the turn's socket callbacks
// are done: on this thread, now() shares one read in between.
void poll_next();
void poll_done();

}  // namespace sluice::net::turn_clock
