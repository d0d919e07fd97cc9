#include "daemon/status_report.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "common/version.h"
#include "daemon/daemon.h"

namespace sluice::daemon {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point then, Clock::time_point now) {
  return std::chrono::duration<double>(now - then).count();
}

double round3(double value) { return static_cast<double>(std::llround(value * 1000.0)) / 1000.0; }

// Four decimals: a clean release takes well under a microsecond.
double nanos_to_ms(std::uint64_t nanos) {
  return static_cast<double>(std::llround(static_cast<double>(nanos) / 100.0)) / 10000.0;
}

struct ClientCounts {
  int active = 0, idle = 0, waiting = 0, login = 0, total = 0;
};

// Clients in `pool`, or all of them when `pool` is null.
ClientCounts count_clients(const Daemon& daemon, const pool::Pool* pool) {
  ClientCounts counts;
  for (const auto& client : daemon.clients()) {
    if (pool != nullptr && client->pool() != pool) continue;
    ++counts.total;
    switch (client->state()) {
      case ClientState::active:
        ++counts.active;
        break;
      case ClientState::idle:
        ++counts.idle;
        break;
      case ClientState::waiting:
        ++counts.waiting;
        break;
      case ClientState::handshake:
      case ClientState::login:
        ++counts.login;
        break;
      case ClientState::closing:
        --counts.total;
        break;
    }
  }
  return counts;
}

json server_counts(const Daemon& daemon, const pool::Pool* only) {
  std::size_t active = 0;
  std::size_t idle = 0;
  std::size_t connecting = 0;
  std::size_t resetting = 0;
  for (const auto& [key, pool] : daemon.pools()) {
    if (only != nullptr && pool.get() != only) continue;
    active += pool->count(pool::ServerState::active);
    idle += pool->count(pool::ServerState::idle);
    connecting += pool->count(pool::ServerState::connecting);
    resetting += pool->count(pool::ServerState::resetting);
  }
  return {{"active", active},
          {"idle", idle},
          {"connecting", connecting},
          {"resetting", resetting},
          {"total", active + idle + connecting + resetting}};
}

// Open descriptors of this process: /proc is in memory, the read is quick.
long open_fds() {
  std::error_code error;
  long count = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++count;
  }
  return count - 1;  // the iterator's own descriptor
}

json drain_block(const Daemon& daemon, Clock::time_point now) {
  const auto& drain = daemon.drain();
  const ClientCounts clients = count_clients(daemon, nullptr);
  if (!drain) {
    return {{"started", false},
            {"elapsed_s", nullptr},
            {"deadline_in_s", nullptr},
            {"scopes_remaining", clients.active},
            {"clients_remaining", clients.total},
            {"forced", 0}};
  }
  const double to_deadline = std::chrono::duration<double>(drain->deadline - now).count();
  return {{"started", true},
          {"elapsed_s", round3(seconds_since(drain->started_at, now))},
          {"deadline_in_s", round3(to_deadline > 0 ? to_deadline : 0)},
          {"scopes_remaining", clients.active},
          {"clients_remaining", clients.total},
          {"forced", drain->forced}};
}

json reload_block(const Daemon& daemon, Clock::time_point now) {
  const auto& last = daemon.last_reload();
  if (!last) return {{"last", nullptr}};
  return {{"last",
           {{"ok", last->ok},
            {"error", last->ok ? json(nullptr) : json(last->message)},
            {"seconds_ago", round3(seconds_since(last->at, now))}}}};
}

}  // namespace

json status_report(const Daemon& daemon) {
  const auto now = Clock::now();
  const ClientCounts clients = count_clients(daemon, nullptr);
  const auto& stats = daemon.teardown_stats();
  std::uint64_t releases = 0;
  std::uint64_t violations = 0;
  for (const auto outcome : pool::kAllScopeOutcomes) {
    releases += stats.histogram(outcome).count();
    violations += stats.violations(outcome);
  }
  const auto& monitor = daemon.loop_monitor();
  return {
      {"state", service_state_name(daemon.state())},
      {"version", kVersion},
      {"pid", ::getpid()},
      {"uptime_s", round3(seconds_since(daemon.started_at(), now))},
      {"clients",
       {{"active", clients.active},
        {"idle", clients.idle},
        {"waiting", clients.waiting},
        {"login", clients.login},
        {"total", clients.total}}},
      {"servers", server_counts(daemon, nullptr)},
      {"drain", drain_block(daemon, now)},
      {"loop",
       {{"lag_ms", round3(monitor.lag_ms())},
        {"max_lag_ms", round3(monitor.max_lag_ms())},
        {"slow_callbacks", monitor.slow_callbacks()}}},
      {"teardown",
       {{"sla_ms", daemon.config().teardown.sla_ms}, {"releases", releases}, {"violations", violations}}},
      {"fds", open_fds()},
      {"reload", reload_block(daemon, now)},
  };
}

json pools_report(const Daemon& daemon) {
  const auto now = Clock::now();
  json pools = json::array();
  for (const auto& [key, pool] : daemon.pools()) {
    const ClientCounts clients = count_clients(daemon, pool.get());
    const auto oldest = pool->oldest_wait();
    json servers = server_counts(daemon, pool.get());
    servers.erase("total");
    pools.push_back({
        {"database", key.database},
        {"user", key.user},
        {"mode", pool->settings().pool_mode == config::PoolMode::session ? "session" : "transaction"},
        {"pool_size", pool->settings().pool_size},
        {"clients", {{"active", clients.active}, {"idle", clients.idle}, {"waiting", clients.waiting}}},
        {"servers", servers},
        {"longest_wait_ms", oldest ? round3(seconds_since(*oldest, now) * 1000.0) : 0.0},
        {"prepared_statements", pool->prepared_statement_count()},
    });
  }
  return {{"pools", pools}};
}

json clients_report(const Daemon& daemon) {
  const auto now = Clock::now();
  json rows = json::array();
  for (const auto& client : daemon.clients()) {
    rows.push_back({
        {"id", client->id()},
        {"state", client_state_name(client->state())},
        {"pool", client->pool() != nullptr ? json(client->pool()->name()) : json(nullptr)},
        {"age_s", round3(seconds_since(client->connected_at(), now))},
        {"state_age_s", round3(seconds_since(client->state_since(), now))},
        {"prepared_statements", client->prepared_statement_count()},
    });
  }
  return {{"clients", rows}};
}

json servers_report(const Daemon& daemon) {
  const auto now = Clock::now();
  json rows = json::array();
  for (const auto& entry : daemon.pools()) {
    const pool::Pool& pool = *entry.second;  // named: a structured binding cannot be captured (C++20, clang)
    pool.for_each_server([&](const pool::ServerConnection& server) {
      rows.push_back({
          {"id", server.id()},
          {"state", pool::state_name(server.state())},
          {"pool", pool.name()},
          {"backend_pid", server.backend_pid()},
          {"age_s", round3(seconds_since(server.created_at(), now))},
          {"state_age_s", round3(seconds_since(server.state_since(), now))},
          {"prepared_statements", server.prepared_statement_count()},
      });
    });
  }
  return {{"servers", rows}};
}

json teardown_report(const Daemon& daemon) {
  const auto& stats = daemon.teardown_stats();
  json outcomes = json::object();
  for (const auto outcome : pool::kAllScopeOutcomes) {
    const auto& histogram = stats.histogram(outcome);
    outcomes[std::string(pool::outcome_name(outcome))] = {
        {"count", histogram.count()},
        {"p50_ms", nanos_to_ms(histogram.percentile(50))},
        {"p90_ms", nanos_to_ms(histogram.percentile(90))},
        {"p99_ms", nanos_to_ms(histogram.percentile(99))},
        {"max_ms", nanos_to_ms(histogram.max())},
        {"sla_violations", stats.violations(outcome)},
    };
  }
  json recent = json::array();
  for (const auto& violation : stats.recent_violations()) {
    const std::time_t at = std::chrono::system_clock::to_time_t(violation.at);
    std::tm utc{};
    gmtime_r(&at, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
    recent.push_back({
        {"outcome", pool::outcome_name(violation.outcome)},
        {"pool", violation.pool},
        {"client", violation.client_id},
        {"duration_ms", nanos_to_ms(violation.nanos)},
        {"active_scopes", violation.active_scopes},
        {"reason", violation.reason},
        {"at", stamp},
    });
  }
  return {{"sla_ms", daemon.config().teardown.sla_ms}, {"outcomes", outcomes}, {"recent_violations", recent}};
}

}  // namespace sluice::daemon
