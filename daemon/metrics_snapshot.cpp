#include "daemon/metrics_snapshot.h"

#include <map>
#include <utility>

#include "common/version.h"
#include "daemon/client_counts.h"
#include "daemon/daemon.h"
#include "daemon/worker.h"
#include "metrics/exposition.h"

namespace sluice::daemon {
namespace {

using PoolName = std::pair<std::string, std::string>;  // (database, user)

metrics::PoolSample& sample_for(std::map<PoolName, metrics::PoolSample>& samples, const PoolName& name) {
  auto& sample = samples[name];
  sample.database = name.first;
  sample.user = name.second;
  return sample;
}

// Adds what varies by worker; prepared statements are the largest share: each
// worker names the statements its clients prepare (as the pools report says).
void add_share(metrics::PoolSample& into, const metrics::PoolSample& from) {
  into.clients_active += from.clients_active;
  into.clients_idle += from.clients_idle;
  into.clients_waiting += from.clients_waiting;
  into.clients_pinned += from.clients_pinned;
  into.servers_active += from.servers_active;
  into.servers_idle += from.servers_idle;
  into.servers_connecting += from.servers_connecting;
  into.servers_resetting += from.servers_resetting;
  into.servers_departing += from.servers_departing;
  into.prepared_statements = std::max(into.prepared_statements, from.prepared_statements);
  into.live = into.live || from.live;
  into.metrics.merge(from.metrics);
}

double unix_seconds(std::chrono::steady_clock::time_point at) {
  const auto wall = std::chrono::system_clock::now() - (std::chrono::steady_clock::now() - at);
  return std::chrono::duration<double>(wall.time_since_epoch()).count();
}

}  // namespace

MetricsShare metrics_share(const Worker& worker) {
  MetricsShare share;
  share.worker.index = worker.index();
  share.worker.loop_lag = worker.loop_monitor().lag_histogram();
  share.worker.slow_callbacks = worker.loop_monitor().slow_callbacks();
  share.teardown = worker.teardown_stats();
  share.clients = worker.client_counters();
  share.forced_scopes = worker.forced_scopes();

  std::map<PoolName, metrics::PoolSample> samples;
  for (const auto& [name, retired] : worker.retired_pool_metrics())
    sample_for(samples, name).metrics.merge(retired);
  for (const auto& [database, departed] : worker.departed_pool_metrics())
    sample_for(samples, {database, metrics::kDepartedUsers}).metrics.merge(departed);
  // A worker's pools of one (database, user) differ by startup settings: their statements add up.
  for (const auto& [key, pool] : worker.pools()) {
    metrics::PoolSample& sample = sample_for(samples, {key.database, key.user});
    sample.live = true;
    sample.servers_active += pool->count(pool::ServerState::active);
    sample.servers_idle += pool->count(pool::ServerState::idle);
    sample.servers_connecting += pool->count(pool::ServerState::connecting);
    sample.servers_resetting += pool->count(pool::ServerState::resetting);
    sample.servers_departing += pool->departing();
    sample.prepared_statements += pool->prepared_statement_count();
    sample.metrics.merge(pool->metrics());
  }
  std::map<const pool::Pool*, ClientCounts> clients_by_pool;
  for (const auto& client : worker.clients()) {
    if (client->pool() == nullptr || client->state() == frontend::ClientState::login) {
      share.worker.clients_logging_in += client->state() == frontend::ClientState::closing ? 0 : 1;
      continue;
    }
    clients_by_pool[client->pool()].add(*client);
  }
  for (const auto& [pool, counts] : clients_by_pool) {
    metrics::PoolSample& sample = sample_for(samples, {pool->key().database, pool->key().user});
    sample.clients_active += counts.active;
    sample.clients_idle += counts.idle;
    sample.clients_waiting += counts.waiting;
    sample.clients_pinned += counts.pinned;
  }
  for (auto& [name, sample] : samples) share.pools.push_back(std::move(sample));
  return share;
}

metrics::Snapshot combine_metrics(const Daemon& daemon, const std::vector<MetricsShare>& shares) {
  metrics::Snapshot snapshot;
  snapshot.version = kVersion;
  snapshot.start_time_seconds = unix_seconds(daemon.started_at());
  snapshot.state = service_state_name(daemon.state());
  const auto& config = daemon.config();
  snapshot.teardown_sla_seconds = config.teardown.sla_ms / 1000.0;
  snapshot.reloads.ok = daemon.reload_counts().ok;
  snapshot.reloads.failed = daemon.reload_counts().failed;
  if (const auto& last = daemon.last_reload()) {
    snapshot.reloads.last_ok = last->ok;
    snapshot.reloads.last_at_seconds = unix_seconds(last->at);
  }

  snapshot.clients.merge(daemon.refused_at_accept());
  std::map<PoolName, metrics::PoolSample> pools;
  for (const auto& share : shares) {
    snapshot.teardown.merge(share.teardown);
    snapshot.clients.merge(share.clients);
    snapshot.drain_forced_scopes += share.forced_scopes;
    snapshot.workers.push_back(share.worker);
    for (const auto& pool : share.pools) add_share(sample_for(pools, {pool.database, pool.user}), pool);
  }
  // A pair with no pool on any worker shows with its database's departed users in this scrape
  // already, whatever each worker has folded so far (each folds at its own janitor turn): its
  // series leaves whole, never lower first.
  for (auto it = pools.begin(); it != pools.end();) {
    if (it->second.live || it->first.second == metrics::kDepartedUsers) {
      ++it;
      continue;
    }
    sample_for(pools, {it->first.first, metrics::kDepartedUsers}).metrics.merge(it->second.metrics);
    it = pools.erase(it);
  }
  for (auto& [name, pool] : pools) {
    pool.departed = name.second == metrics::kDepartedUsers;
    const auto database = config.databases.find(name.first);
    if (database != config.databases.end()) pool.pool_size = database->second.pool.pool_size;
    snapshot.pools.push_back(std::move(pool));
  }
  return snapshot;
}

// Scrapes that arrive while the workers are being asked wait for that answer: however many
// scrapers there are, one gather is in flight, and each format is rendered once per gather.
void Daemon::scrape_metrics(metrics::Format format, metrics::MetricsServer::Respond respond) {
  scrapes_waiting_.emplace_back(format, std::move(respond));
  if (scrapes_waiting_.size() > 1) return;
  gather<MetricsShare>(metrics_share, [this](const std::vector<MetricsShare>& shares) {
    const metrics::Snapshot snapshot = combine_metrics(*this, shares);
    std::map<metrics::Format, std::string> rendered;
    for (auto& [wanted, answer] : std::exchange(scrapes_waiting_, {})) {
      auto [body, added] = rendered.try_emplace(wanted);
      if (added) body->second = metrics::render(snapshot, wanted);
      answer(body->second);
    }
  });
}

}  // namespace sluice::daemon
