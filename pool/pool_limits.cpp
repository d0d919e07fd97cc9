// The limits PgBouncer users rely on, as the pool applies them (README "Limits against PgBouncer's
// names"): max_db_connections and max_user_connections (daemon-wide counts, shared fairly between
// the pools that wait for them), min_pool_size, reserve_pool_size and server_check_query.
#include <libpq-fe.h>

#include <algorithm>
#include <string>
#include <utility>

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
// How long a closed server's places wait for its backend to go. PostgreSQL lets one go within a
// millisecond or so of the goodbye; one still there after this is stuck (a query that ignores its
// cancel) or cut off by the network, and holding its places longer would starve the pools.
constexpr std::chrono::seconds kDepartureWait{5};
// A contended limit's line at most this often per pool and limit: at a contended limit, clients
// begin to wait at nearly every transaction.
constexpr std::chrono::seconds kLimitLogInterval{60};

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

// A pool at its share while others wait takes no more: the place it gave back is theirs. A place
// taken is a turn: its pair goes to the end of the line.
bool Pool::take_places() {
  const auto& settings = database_.pool;
  const CountSeat* full = nullptr;
  const char* limit = nullptr;
  const bool contending = !waiters_.empty();
  if (over_share(seats_.database, settings.max_db_connections, 1, contending) ||
      !seats_.database.count->try_take(*seats_.database.member, settings.max_db_connections)) {
    full = &seats_.database;
    limit = "max_db_connections";
  } else if (over_share(seats_.user, settings.max_user_connections, 1, contending) ||
             !seats_.user.count->try_take(*seats_.user.member, settings.max_user_connections)) {
    seats_.database.count->give_back(*seats_.database.member);
    full = &seats_.user;
    limit = "max_user_connections";
  }
  if (full == nullptr) {
    set_starved_on(nullptr);
    if (limited()) [[unlikely]] {
      for (const CountSeat* seat : {&seats_.database, &seats_.user})
        seat->count->to_end_of_line(*seat->member, this);
    }
    return true;
  }
  if (!waiters_.empty()) {
    ++limit_counts_.limit_reached;
    if (starved_on_ != full) log_limit_reached(*full, limit);
    set_starved_on(full);
  }
  return false;
}

// At a contended limit a pool's clients begin to wait at nearly every transaction, thousands of
// times a second: the log says so once a minute at most per limit, with how often since (the pools
// command's limits.limit_reached counts every server not opened for them, a larger number).
void Pool::log_limit_reached(const CountSeat& seat, const char* limit) {
  LimitLog& log = limit_logs_[&seat == &seats_.database ? 0 : 1];
  ++log.waits_unlogged;
  const auto now = Clock::now();
  if (log.logged_at && now - *log.logged_at < kLimitLogInterval) return;
  std::string since_last;
  if (log.logged_at && log.waits_unlogged > 1) {
    since_last = " (its clients began to wait " + std::to_string(log.waits_unlogged) +
                 " times since the last such line)";
  }
  log::info("pool ", name_, ": ", limit, " reached; its clients wait for a place", since_last);
  log.logged_at = now;
  log.waits_unlogged = 0;
}

void Pool::give_back_places() {
  for (const CountSeat* seat : {&seats_.database, &seats_.user}) seat->count->give_back(*seat->member);
}

void Pool::set_starved_on(const CountSeat* seat) {
  if (seat == starved_on_) return;
  if (starved_on_ != nullptr) starved_on_->count->stop_starving(*starved_on_->member, this);
  if (seat != nullptr) seat->count->start_starving(*seat->member, this);
  starved_on_ = seat;
}

// Its share of a limit that other pairs' clients wait for: the limit split evenly between its pair
// and them (rounded up), and that split again between the pair's pools that wait (other startup
// settings, other workers); nothing when it is not `contending` (none of its clients wait). A
// user's clients spread over many pools therefore weigh as one user. With more waiting pairs than
// places (or more of a pair's pools than places it can hold), places take turns: a free place goes
// to the first pairs in line (in a pair, to its first pool in line), and a place held for kPlaceTurn
// goes back when its server is next idle (its pool and pair then wait at the end of the lines).
bool Pool::over_share(const CountSeat& seat, int limit, std::size_t extra, bool contending) const {
  if (limit <= 0) return false;
  const ConnectionCount& count = *seat.count;
  const ConnectionCount::Member& pair = *seat.member;
  if (extra == 0 && count.servers() > limit) return true;  // a lowered limit: idle servers go
  const ConnectionCount::Waiting waiting = count.waiting_beside(pair);
  const int other_pairs = waiting.other_members;
  const int pair_pools = waiting.member_pools - (starved_on_ == &seat ? 1 : 0);
  if (other_pairs <= 0 && pair_pools <= 0) return false;
  if (!contending) return true;
  if (other_pairs >= limit) {
    if (extra == 0) return held_a_place_turn();
    return count.place_in_line(pair) >= limit - count.servers() || count.place_in_member_line(pair, this) > 0;
  }
  const int pair_share = (limit + other_pairs) / (other_pairs + 1);
  const int pair_servers = pair.servers();
  const int pair_wanted = pair_servers + static_cast<int>(extra);
  if (pair_wanted > pair_share) return true;
  // A departing backend's place counts as free: it soon is (try_take waits for it), and counted as
  // taken, each server given back would look like one more owed.
  const int free_places = std::max(0, limit - count.servers());
  // Rounded up, the shares can add up to more than the limit (three pairs at four places: two each),
  // and pairs at theirs could hold every place: beyond the rounded-down share, a pair yields to a
  // waiting pair that holds less than that, the free places left counted as that pair's.
  const int rounded_down_share = limit / (other_pairs + 1);
  const int free_after = std::max(0, free_places - static_cast<int>(extra));
  if (pair_wanted > rounded_down_share && waiting.fewest_other_servers < rounded_down_share - free_after) {
    return true;
  }
  if (pair_pools <= 0) return false;
  // What the pair's pools split: its share, or what it holds and the free places when that is less
  // (a pair at its share keeps it): split on a share it cannot reach, one pool would hold its part
  // and keep a sibling waiting.
  const int pair_places = std::min(pair_share, pair_servers + free_places);
  if (pair_pools >= pair_places) {  // more of its pools wait than it can hold: they take turns
    if (extra == 0) return held_a_place_turn();
    return count.place_in_member_line(pair, this) >= pair_places - pair_servers;
  }
  const auto share = static_cast<std::size_t>((pair_places + pair_pools) / (pair_pools + 1));
  return total_servers() + extra > share;
}

// Its oldest idle server has held its place for a turn: with more waiting than places, it goes back.
bool Pool::held_a_place_turn() const {
  return !idle_.empty() && idle_.front()->created_at() <= Clock::now() - kPlaceTurn;
}

// The oldest idle server goes when the pool is over its share and either its clients wait (a
// moment's use is no claim then) or it sat unused kRecentlyUsed; or, though its clients keep it busy
// without ever waiting, when the pool would be over its share even if they waited: its turn is up.
bool Pool::owes_idle_server(Clock::time_point recent) const {
  const auto& settings = database_.pool;
  const auto over = [&](bool contending) {
    return over_share(seats_.database, settings.max_db_connections, 0, contending) ||
           over_share(seats_.user, settings.max_user_connections, 0, contending);
  };
  if (!waiters_.empty()) return over(true);
  if (!over(false)) return false;
  return idle_.front()->state_since() <= recent || over(true);
}

// Only idle servers go: a transaction in flight is never cut for fairness. A waiting pool of this
// worker takes the place at once, one of another worker at its janitor's next turn.
void Pool::give_owed_places() {
  const auto recent = Clock::now() - kRecentlyUsed;
  bool gave = false;
  while (!idle_.empty() && owes_idle_server(recent)) {
    ++limit_counts_.places_given_back;
    close_server(*idle_.front(),
                 "its place is owed to another pool's clients waiting at max_db_connections or "
                 "max_user_connections");
    gave = true;
  }
  if (!gave) return;
  // A turn given back: the pool and its pair to the lines' ends.
  for (const CountSeat* seat : {&seats_.database, &seats_.user})
    seat->count->to_end_of_line(*seat->member, this);
  wake_starving_pools(this);
}

void Pool::wake_starving_pools(const Pool* except) {
  for (Pool* pool : context_.pools) {
    if (pool != except && pool->starved_on_ != nullptr && !pool->waiters_.empty()) pool->launch_connections();
  }
}

void Pool::hold_places(std::string server, int socket_copy) {
  DepartingBackend::Owner& owner = *this;
  auto departing = std::make_unique<DepartingBackend>(context_.loop, socket_copy, std::move(server), owner);
  if (!departing->watching()) return give_back_places();
  for (const CountSeat* seat : {&seats_.database, &seats_.user}) seat->count->depart(*seat->member);
  departing_.push_back(std::move(departing));
}

// Called from the departing backend's own callback: it is freed on the next loop turn.
void Pool::backend_departed(DepartingBackend& departing) {
  const auto it =
      std::ranges::find_if(departing_, [&](const auto& held) { return held.get() == &departing; });
  if (it == departing_.end()) return;  // never: only hold_places makes them, and each says so once
  context_.deleter->defer(std::move(*it));
  departing_.erase(it);
  free_departed_places();
  wake_starving_pools(nullptr);
}

void Pool::free_departed_places() {
  for (const CountSeat* seat : {&seats_.database, &seats_.user}) seat->count->departed();
}

void Pool::give_up_on_departures(Clock::time_point now) {
  bool freed = false;
  while (!departing_.empty() && now - departing_.front()->since() >= kDepartureWait) {
    log::warning("pool ", name_, ": ", departing_.front()->server(), " is still there ",
                 kDepartureWait.count(),
                 " s after its close; its place goes to the next server all the same");
    departing_.pop_front();
    free_departed_places();
    freed = true;
  }
  if (freed) wake_starving_pools(nullptr);
}

std::size_t Pool::min_size() const {
  return std::min(static_cast<std::size_t>(database_.pool.min_pool_size), base_size_limit());
}

// As PgBouncer: only while the pool has clients, or when the conninfo names its user (it is then
// made at start, before any client). Never while another pool waits for a place it would take.
void Pool::keep_warm() {
  if (paused_ || !warming_ || min_size() == 0 || (clients_ == 0 && !warm_without_clients())) return;
  if (seats_.database.count->starving_members() > 0 || seats_.user.count->starving_members() > 0) return;
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
