#include "daemon/worker.h"

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/upgrade/handover_protocol.h"
#include "net/loop_close.h"
#include "protocol/sqlstate.h"

namespace sluice::daemon {
namespace {

constexpr std::chrono::milliseconds kJanitorInterval(100);

std::uint64_t monotonic_ms() { return uv_hrtime() / 1000000; }

}  // namespace

Worker::Worker(Daemon& daemon, std::size_t index, std::size_t worker_count, config::Config config,
               uv_loop_t* shared_loop, std::atomic<std::uint64_t>& server_ids)
    : daemon_(daemon),
      index_(index),
      worker_count_(worker_count),
      config_(std::move(config)),
      own_loop_(shared_loop == nullptr ? std::make_unique<uv_loop_t>() : nullptr),
      loop_(shared_loop != nullptr ? shared_loop : own_loop_.get()) {
  if (own_loop_) {
    uv_loop_init(loop_);
    own_reactor_ = std::make_unique<net::SocketReactor>(loop_);
    mailbox_ = std::make_unique<net::Mailbox>(loop_);
  }
  deleter_ = std::make_unique<net::DeferredDeleter>(loop_);
  loop_monitor_ = std::make_unique<LoopMonitor>(loop_, config_.diagnostics.slow_callback_ms);
  stats_.set_sla(std::chrono::milliseconds(config_.teardown.sla_ms));
  pool_context_.loop = loop_;
  pool_context_.deleter = deleter_.get();
  pool_context_.stats = &stats_;
  pool_context_.client_counters = &client_counters_;
  pool_context_.message_max = config_.limits.message_max;
  pool_context_.teardown_max_ms = config_.teardown.max_ms;
  pool_context_.server_ids = &server_ids;
  pool_context_.counts = &daemon.connection_counts();
  pool_context_.scram_keys = &daemon.scram_keys();
  warm_forced_user_pools();
  heartbeat_ms_ = monotonic_ms();
  janitor_ = std::make_unique<net::LoopTimer>(loop_, [this] { on_janitor(); });
  janitor_->start(kJanitorInterval, kJanitorInterval);
}

Worker::~Worker() {
  clients_.clear();
  secret_lookup_.reset();
  pools_.clear();
  loop_monitor_.reset();
  deleter_.reset();
  mailbox_.reset();
  janitor_.reset();
  if (own_loop_) net::close_loop(loop_);  // else the daemon closes its loop
}

void Worker::start() {
  if (!own_loop_) return;
  thread_ = std::thread([this] {
    // As main() does for the main loop: an exception ends the daemon, said and with status 70.
    try {
      own_reactor_->run();
    } catch (const std::exception& error) {
      daemon_.worker_failed(index_, error.what());
    } catch (...) {
      daemon_.worker_failed(index_, "unknown exception");
    }
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

// ---- operations ------------------------------------------------------------

void Worker::adopt_client(int fd, Transport transport, std::uint64_t id) {
  clients_.push_back(std::make_unique<ClientSession>(*this, id, fd, transport));
  clients_.back()->position = std::prev(clients_.end());
  log::debug("client ", id, ": connected (worker ", index_, ")");
}

void Worker::adopt_moved_client(std::vector<int> descriptors, frontend::MovedClient moved, std::uint64_t id,
                                std::uint64_t move) {
  clients_.push_back(std::make_unique<ClientSession>(*this, id, descriptors.at(0), moved.transport));
  ClientSession& client = *clients_.back();
  client.position = std::prev(clients_.end());
  // The old process's SCRAM pass-through keys: this process's servers for the role log in with them.
  if (moved.scram_keys && !scram_keys().find(moved.database, moved.user))
    scram_keys().remember(moved.database, moved.user, *moved.scram_keys);
  log::debug("client ", id, ": moved in (client ", moved.old_id, " of the old process; worker ", index_, ")");
  const bool adopted = client.resume(std::move(moved), descriptors.size() > 1 ? descriptors[1] : -1);
  daemon_.settle_moved_client(move, adopted);
}

std::optional<nlohmann::json> Worker::handover_message(const nlohmann::json& state, std::size_t descriptors) {
  nlohmann::json message{{"type", "client"}, {"fds", descriptors}, {"client", state}};
  // Measured with the widest "move" number the main loop will add, so that what it sends fits.
  nlohmann::json measured = message;
  measured["move"] = std::numeric_limits<std::uint64_t>::max();
  if (upgrade::encode_message(measured).size() > upgrade::kMaxMessageBytes) return std::nullopt;
  return message;
}

void Worker::hand_over_client(nlohmann::json message, std::vector<int> descriptors, int kept) {
  daemon_.hand_over_client(std::move(message), std::move(descriptors), kept);
}

void Worker::set_paused(bool paused) {
  paused_ = paused;
  for (auto& [key, pool] : pools_) pool->set_paused(paused);
}

void Worker::start_drain(Clock::time_point deadline, std::uint64_t generation,
                         std::chrono::milliseconds grace, bool hand_over) {
  const auto now = Clock::now();
  drain_ = Drain{deadline, generation};
  drain_->hand_over = hand_over;
  set_paused(false);
  for (auto& [key, pool] : pools_) pool->set_warming(false);
  // Clients that can move need no grace: those at rest go now, the others at their boundary.
  if (hand_over) {
    for (auto it = clients_.begin(); it != clients_.end();) {
      ClientSession& client = **it++;
      client.move_if_at_rest();
    }
  }
  if (grace.count() > 0) {
    drain_->sweep_at = now + grace;  // the janitor sweeps
  } else {
    sweep_for_drain();
  }
  advance_drain(now);
}

void Worker::sweep_for_drain() {
  // Each client is closed at its next transaction boundary; idle ones now.
  for (auto it = clients_.begin(); it != clients_.end();) {
    ClientSession& client = **it++;
    client.drain();
  }
}

bool Worker::handing_over() const { return draining() && drain_->hand_over && !daemon_.successor_lost(); }

void Worker::stop_handing_over() {
  if (!drain_ || !drain_->hand_over) return;
  drain_->hand_over = false;
  if (!drain_->sweep_at) sweep_for_drain();  // those that waited at rest to move leave now
}

void Worker::end_drain() {
  drain_.reset();
  for (auto& [key, pool] : pools_) pool->set_warming(true);
}

void Worker::advance_drain(Clock::time_point now) {
  if (!drain_) return;
  if (drain_->sweep_at && now >= *drain_->sweep_at) {
    drain_->sweep_at.reset();
    sweep_for_drain();
  }
  if (!drain_->clients_gone) {
    if (now >= drain_->deadline) {
      // Closing the last client must not report the drain from inside this loop (client_closed).
      forcing_ = true;
      for (auto it = clients_.begin(); it != clients_.end();) {
        ClientSession& client = **it++;
        if (client.force_close_for_drain()) ++drain_->forced;
      }
      forcing_ = false;
    }
    if (!clients_.empty()) return;
    drain_->clients_gone = true;
    daemon_.worker_drained(drain_->generation, drain_->forced);
  }
  bool tearing_down = false;
  for (auto& [key, pool] : pools_) {
    pool->close_idle("drained");
    tearing_down = tearing_down || pool->count(pool::ServerState::resetting) > 0 ||
                   pool->count(pool::ServerState::active) > 0;
  }
  if (tearing_down || drain_->settled) return;
  drain_->settled = true;
  daemon_.worker_settled(drain_->generation);
}

void Worker::apply_config(config::Config next) {
  for (auto& [key, pool] : pools_) {
    const auto db = next.databases.find(key.database);
    if (db == next.databases.end()) continue;  // its clients stay until they leave, no new logins
    // A database removed by an earlier reload and now back has no old settings to compare.
    const auto old = config_.databases.find(key.database);
    config::DatabaseConfig settings = settings_for(next, db->second, key.user);
    if (old == config_.databases.end() || !(settings == settings_for(config_, old->second, key.user)))
      pool->update(std::move(settings));
  }
  config_ = std::move(next);
  // The last login's pool may be of a database the new config lacks.
  last_found_pool_ = nullptr;
  if (secret_lookup_) secret_lookup_->forget_cached();  // the secrets, or how to find them, may have changed
  warm_forced_user_pools();
  stats_.set_sla(std::chrono::milliseconds(config_.teardown.sla_ms));
  pool_context_.message_max = config_.limits.message_max;
  pool_context_.teardown_max_ms = config_.teardown.max_ms;
  loop_monitor_->set_slow_callback_ms(config_.diagnostics.slow_callback_ms);
}

void Worker::shutdown() {
  for (auto it = clients_.begin(); it != clients_.end();) {
    ClientSession& client = **it++;
    client.fail(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
  }
  stop();
}

void Worker::stop() {
  if (stopped_) return;
  stopped_ = true;
  secret_lookup_.reset();
  last_found_pool_ = nullptr;
  pools_.clear();
  janitor_->stop();
  if (own_reactor_) own_reactor_->stop();
}

// ---- for client sessions -----------------------------------------------------

void Worker::client_closed(ClientSession& client) {
  const auto [first, last] = clients_by_cancel_pid_.equal_range(client.cancel_process_id());
  for (auto it = first; it != last; ++it) {
    if (it->second == &client) {
      clients_by_cancel_pid_.erase(it);
      break;
    }
  }
  deleter_->defer(std::move(*client.position));
  clients_.erase(client.position);
  client_count_.fetch_sub(1, std::memory_order_relaxed);
  if (draining() && clients_.empty() && !forcing_) advance_drain(Clock::now());
}

config::DatabaseConfig Worker::share_of(const config::DatabaseConfig& database) const {
  config::DatabaseConfig share = database;
  const auto workers = static_cast<int>(worker_count_);
  // Split as evenly as the numbers allow, the remainder to the first workers.
  const auto split = [&](int total) {
    return total / workers + (static_cast<int>(index_) < total % workers ? 1 : 0);
  };
  share.pool.pool_size = std::max(1, split(database.pool.pool_size));
  share.pool.min_pool_size = split(database.pool.min_pool_size);
  share.pool.reserve_pool_size = split(database.pool.reserve_pool_size);
  return share;
}

frontend::SecretLookup& Worker::secret_lookup() {
  if (!secret_lookup_) secret_lookup_ = std::make_unique<frontend::SecretLookup>(*this);
  return *secret_lookup_;
}

config::DatabaseConfig Worker::settings_for(const config::Config& config,
                                            const config::DatabaseConfig& database,
                                            const std::string& user) const {
  config::DatabaseConfig settings = share_of(database);
  const auto own = config.users.find(user);
  if (own != config.users.end() && own->second.max_user_connections)
    settings.pool.max_user_connections = *own->second.max_user_connections;
  return settings;
}

// min_pool_size with a user in the conninfo: its pool is made before any client (as PgBouncer
// warms a forced user's pool), and its janitor opens the servers.
void Worker::warm_forced_user_pools() {
  for (const auto& [name, database] : config_.databases) {
    if (database.pool.min_pool_size == 0) continue;
    if (const std::string user = pool::conninfo_user(database.conninfo); !user.empty())
      pool_for(name, user, {});
  }
}

pool::Pool* Worker::pool_for(const std::string& database, const std::string& user,
                             const protocol::StartupSettings& settings) {
  const pool::PoolKeyRef wanted{database, user, settings};
  // Logins mostly ask for the pool the one before found: one test of equality instead of the
  // maps' ordered comparisons. Its database was configured then, and the config is the same.
  if (last_found_pool_ != nullptr && pool::PoolKeyOrder::same(last_found_pool_->key(), wanted))
    return last_found_pool_;
  const auto db = config_.databases.find(database);
  if (db == config_.databases.end()) return nullptr;
  auto it = pools_.find(wanted);
  if (it == pools_.end()) {
    pool::PoolKey key{database, user, settings};
    auto& budget = budgets_[{database, user}];
    if (!budget) budget = std::make_shared<pool::ServerBudget>();
    it = pools_
             .emplace(key, std::make_unique<pool::Pool>(pool_context_, key,
                                                        settings_for(config_, db->second, user), budget))
             .first;
    it->second->set_paused(paused_);
    it->second->set_warming(!drain_);
  }
  last_found_pool_ = it->second.get();
  return last_found_pool_;
}

void Worker::assign_cancel_key(ClientSession& client, std::uint32_t& process_id, std::uint32_t& secret) {
  secret = next_cancel_secret();
  const auto workers = static_cast<std::uint32_t>(worker_count_);
  std::uniform_int_distribution<std::uint32_t> slot(0, 0x7fffffffU / workers - 1);
  do {
    process_id = slot(cancel_pid_generator_) * workers + static_cast<std::uint32_t>(index_);
  } while (process_id == 0 || clients_by_cancel_pid_.contains(process_id));
  clients_by_cancel_pid_.emplace(process_id, &client);
}

void Worker::adopt_cancel_key(ClientSession& client, std::uint32_t process_id) {
  clients_by_cancel_pid_.emplace(process_id, &client);
}

// The secret must be unguessable: a right key cancels that client's query. The
// kernel's CSPRNG gives them, a batch per getrandom call (one call per login
// would be a tenth of a short-lived connection's system calls).
std::uint32_t Worker::next_cancel_secret() {
  if (secrets_left_ == 0) {
    const auto size = static_cast<ssize_t>(sizeof secrets_);
    if (getrandom(secrets_.data(), sizeof secrets_, 0) != size) {
      for (auto& secret : secrets_) secret = static_cast<std::uint32_t>(cancel_pid_generator_());
    }
    secrets_left_ = secrets_.size();
  }
  return secrets_[--secrets_left_];
}

void Worker::cancel(std::uint32_t process_id, std::uint32_t secret) {
  if (process_id % worker_count_ != index_) return daemon_.route_cancel(process_id, secret);
  const auto [first, last] = clients_by_cancel_pid_.equal_range(process_id);
  const auto it = std::find_if(
      first, last, [secret](const auto& entry) { return entry.second->cancel_secret() == secret; });
  if (it == last) return daemon_.cancel_unknown_key(process_id, secret);
  log::debug("client ", it->second->id(), ": cancel request forwarded");
  it->second->forward_cancel();
}

void Worker::on_janitor() {
  heartbeat_ms_.store(monotonic_ms(), std::memory_order_relaxed);
  const auto now = Clock::now();
  for (auto it = pools_.begin(); it != pools_.end();) {
    it->second->tick(now);
    if (it->second->forgettable()) {
      it = forget_pool(it);
    } else {
      ++it;
    }
  }
  fold_retired_metrics();
  const std::uint64_t now_ms = uv_now(loop_);
  for (auto it = clients_.begin(); it != clients_.end();) {
    ClientSession& client = **it++;
    client.check_timeouts(now_ms);
  }
  advance_drain(now);
}

// A pool nobody uses (no client, no server) is forgotten, whatever its startup settings: a stream
// of distinct users, or of settings, leaves nothing behind. Its counters stay with the worker.
Worker::Pools::iterator Worker::forget_pool(Pools::iterator it) {
  const std::pair<std::string, std::string> pair{it->first.database, it->first.user};
  retired_pool_metrics_[pair].merge(it->second->metrics());
  if (it->second.get() == last_found_pool_) last_found_pool_ = nullptr;
  it = pools_.erase(it);
  if (const auto budget = budgets_.find(pair); budget != budgets_.end() && budget->second->pools.empty())
    budgets_.erase(budget);
  return it;
}

// A pair's series stays while a pool of it lives on any worker (its counters never go back); once
// none does, this worker's part joins its database's total of departed users (user="" in /metrics),
// so that what a database counted never goes back either, and the series count stays bounded.
void Worker::fold_retired_metrics() {
  for (auto it = retired_pool_metrics_.begin(); it != retired_pool_metrics_.end();) {
    const auto& [database, user] = it->first;
    if (pool_context_.counts->has_pool(database, user)) {
      ++it;
      continue;
    }
    departed_pool_metrics_[database].merge(it->second);
    it = retired_pool_metrics_.erase(it);
  }
}

}  // namespace sluice::daemon
