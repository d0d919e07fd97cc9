// The limits PgBouncer users rely on, as the pool applies them (README "Limits against PgBouncer's
// names"): max_db_connections and max_user_connections (daemon-wide counts, shared fairly between
// the pools that wait for them), min_pool_size, reserve_pool_size and server_check_query.
#include <libpq-fe.h>

#include <algorithm>

#include "common/log.h"
#include "pool/pool.h"

namespace sluice::pool {
namespace {

// A server its pool used a moment ago keeps its place while nobody of that pool waits: its clients'
// next transaction likely comes soon, and a place moved costs a connect on each side.
constexpr std::chrono::milliseconds kRecentlyUsed{100};
// With more pools waiting than places, how long a pool keeps a place before it takes turns: long
// enough that the connect a turn costs (a few ms) stays small beside the transactions it serves.
constexpr std::chrono::milliseconds kPlaceTurn{250};

}  // namespace

std::string conninfo_user(const std::string& conninfo) {
  std::string user;
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr)) {
    for (PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
      if (option->val != nullptr && std::string_view(option->keyword) == "user") user = option->val;
    }
    PQconninfoFree(options);
  }
  return user;
}

// A pool at its share while others wait takes no more: the place it gave back is theirs.
bool Pool::take_places() {
  const auto& settings = database_.pool;
  ConnectionCount* full = nullptr;
  const char* limit = nullptr;
  if (over_share(database_count_, settings.max_db_connections, 1) ||
      !database_count_.try_take(settings.max_db_connections)) {
    full = &database_count_;
    limit = "max_db_connections";
  } else if (over_share(user_count_, settings.max_user_connections, 1) ||
             !user_count_.try_take(settings.max_user_connections)) {
    database_count_.give_back();
    full = &user_count_;
    limit = "max_user_connections";
  }
  if (full == nullptr) {
    set_starved_on(nullptr);
    return true;
  }
  if (!waiters_.empty()) {
    ++limit_counts_.limit_reached;
    if (starved_on_ != full) log::info("pool ", name_, ": ", limit, " reached; its clients wait for a place");
    set_starved_on(full);
  }
  return false;
}

void Pool::give_back_places() {
  database_count_.give_back();
  user_count_.give_back();
}

void Pool::set_starved_on(ConnectionCount* count) {
  if (count == starved_on_) return;
  if (starved_on_ != nullptr) starved_on_->stop_starving(this);
  if (count != nullptr) count->start_starving(this);
  starved_on_ = count;
}

// Its share of a limit that other pools' clients wait for: the limit split evenly between it and
// them (rounded up); nothing when none of its own clients wait (but see kRecentlyUsed). With more
// waiting pools than places, places take turns: a free place goes to the first pools in line, and a
// place held for kPlaceTurn goes back when its server is next idle (its pool then waits at the end of
// the line).
bool Pool::over_share(const ConnectionCount& count, int limit, std::size_t extra) const {
  if (limit <= 0) return false;
  if (extra == 0 && count.servers() > limit) return true;  // a lowered limit: idle servers go
  const int others = count.starving_pools() - (starved_on_ == &count ? 1 : 0);
  if (others <= 0) return false;
  if (waiters_.empty()) return true;
  if (others >= limit) {
    if (extra > 0) return count.place_in_line(this) >= limit - count.servers();
    return !idle_.empty() && idle_.front()->created_at() <= Clock::now() - kPlaceTurn;
  }
  const auto share = static_cast<std::size_t>((limit + others) / (others + 1));
  return total_servers() + extra > share;
}

// Only idle servers go: a transaction in flight is never cut for fairness. A waiting pool of this
// worker takes the place at once, one of another worker at its janitor's next turn.
void Pool::give_owed_places() {
  const auto& settings = database_.pool;
  const auto recent = Clock::now() - kRecentlyUsed;
  bool gave = false;
  while (!idle_.empty() && (over_share(database_count_, settings.max_db_connections) ||
                            over_share(user_count_, settings.max_user_connections))) {
    if (waiters_.empty() && idle_.front()->state_since() > recent) break;  // the oldest idle first
    ++limit_counts_.places_given_back;
    close_server(*idle_.front(),
                 "its place is owed to another pool's clients waiting at max_db_connections or "
                 "max_user_connections");
    gave = true;
  }
  if (!gave) return;
  if (starved_on_ != nullptr) starved_on_->start_starving(this);  // a turn given back: to the line's end
  for (Pool* pool : context_.pools) {
    if (pool != this && pool->starved_on_ != nullptr && !pool->waiters_.empty()) pool->launch_connections();
  }
}

std::size_t Pool::min_size() const {
  return std::min(static_cast<std::size_t>(database_.pool.min_pool_size), base_size_limit());
}

// As PgBouncer: only while the pool has clients, or when the conninfo names its user (it is then
// made at start, before any client). Never while another pool waits for a place it would take.
void Pool::keep_warm() {
  if (paused_ || !warming_ || min_size() == 0 || (clients_ == 0 && conninfo_user_ != key_.user)) return;
  if (database_count_.starving_pools() > 0 || user_count_.starving_pools() > 0) return;
  while (total_servers() < min_size() && budget_->servers < base_size_limit() && can_launch_now()) {
    if (!open_server()) return;
  }
}

void Pool::update_reserve(Clock::time_point now) {
  const auto& settings = database_.pool;
  const bool open =
      settings.reserve_pool_size > 0 && settings.reserve_pool_timeout_ms > 0 && !waiters_.empty() &&
      now - waiters_.front().since >= std::chrono::milliseconds(settings.reserve_pool_timeout_ms);
  if (open == reserve_open_) return;
  reserve_open_ = open;
  if (open) {
    log::info("pool ", name_, ": a client waited reserve_pool_timeout_ms (", settings.reserve_pool_timeout_ms,
              " ms): up to ", settings.reserve_pool_size, " reserve servers");
  } else {
    close_idle_over_size();  // reserve servers go as they come back idle
  }
}

// Runs as the pool's own errand on the idle server; a failure discards it, and the waiter it was
// meant for is served by the next server (or a new one), never told.
void Pool::start_check(ServerConnection& server) {
  TeardownPlan plan;
  plan.started_at = Clock::now();
  plan.reason = "server_check_query after server_check_delay_s idle";
  plan.reset_query = database_.pool.server_check_query;
  plan.server_check = true;
  plan.upkeep = true;
  ++checks_in_flight_;
  ++limit_counts_.checks_run;
  transition(server, ServerState::resetting);
  server.begin_teardown(std::move(plan));
}

void Pool::check_finished(ScopeOutcome outcome) {
  --checks_in_flight_;
  if (outcome == ScopeOutcome::discard) ++limit_counts_.checks_failed;
}

}  // namespace sluice::pool
