#include "net/turn_clock.h"

namespace sluice::net::turn_clock {
namespace {

struct Turn {
  bool polling = false;  // between this thread's prepare and check callbacks
  bool stamped = false;
  Clock::time_point at;
};

thread_local Turn turn;

}  // namespace

Clock::time_point now() {
  if (!turn.polling) return Clock::now();
  if (!turn.stamped) {
    turn.at = Clock::now();
    turn.stamped = true;
  }
  return turn.at;
}

void poll_next() { turn = Turn{true, false, {}}; }

void poll_done() { turn.polling = false; }

}  // namespace sluice::net::turn_clock
