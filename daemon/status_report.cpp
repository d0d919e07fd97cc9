#include "daemon/status_report.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "common/version.h"
#include "daemon/client_counts.h"
#include "daemon/daemon.h"
#include "daemon/worker.h"
#include "frontend/client_auth.h"

namespace sluice::daemon {

using frontend::client_state_name;
using frontend::ClientState;
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

// The worker's clients in `pool`, or all of them when `pool` is null.
ClientCounts count_clients(const Worker& worker, const pool::Pool* pool) {
  ClientCounts counts;
  for (const auto& client : worker.clients()) {
    if (pool == nullptr || client->pool() == pool) counts.add(*client);
  }
  return counts;
}

json client_counts_json(const ClientCounts& counts) {
  return {{"active", counts.active}, {"idle", counts.idle},     {"waiting", counts.waiting},
          {"login", counts.login},   {"pinned", counts.pinned}, {"total", counts.total}};
}

json server_counts(const Worker& worker, const pool::Pool* only) {
  std::size_t active = 0;
  std::size_t idle = 0;
  std::size_t connecting = 0;
  std::size_t resetting = 0;
  std::size_t departing = 0;
  for (const auto& [key, pool] : worker.pools()) {
    if (only != nullptr && pool.get() != only) continue;
    active += pool->count(pool::ServerState::active);
    idle += pool->count(pool::ServerState::idle);
    connecting += pool->count(pool::ServerState::connecting);
    resetting += pool->count(pool::ServerState::resetting);
    departing += pool->departing();
  }
  // Departing ones are closed: PostgreSQL still counts their backends, sluiced no longer.
  return {{"active", active},         {"idle", idle},
          {"connecting", connecting}, {"resetting", resetting},
          {"departing", departing},   {"total", active + idle + connecting + resetting}};
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

// `clients`: the status "clients" block summed over the workers.
json drain_block(const Daemon& daemon, const json& clients, int forced, Clock::time_point now) {
  const auto& drain = daemon.drain();
  if (!drain) {
    return {{"started", false},
            {"elapsed_s", nullptr},
            {"deadline_in_s", nullptr},
            {"scopes_remaining", clients["active"]},
            {"clients_remaining", clients["total"]},
            {"forced", 0}};
  }
  const double to_deadline = std::chrono::duration<double>(drain->deadline - now).count();
  return {{"started", true},
          {"elapsed_s", round3(seconds_since(drain->started_at, now))},
          {"deadline_in_s", round3(to_deadline > 0 ? to_deadline : 0)},
          {"scopes_remaining", clients["active"]},
          {"clients_remaining", clients["total"]},
          {"forced", forced}};
}

json reload_block(const Daemon& daemon, Clock::time_point now) {
  const auto& last = daemon.last_reload();
  if (!last) return {{"last", nullptr}};
  return {{"last",
           {{"ok", last->ok},
            {"error", last->ok ? json(nullptr) : json(last->message)},
            {"seconds_ago", round3(seconds_since(last->at, now))}}}};
}

// Adds `from` into `into`, key by key: numbers are summed, or for keys in
// `largest` the larger is kept; objects recurse; anything else keeps `into`'s.
void add_into(json& into, const json& from, std::initializer_list<std::string_view> largest = {}) {
  for (const auto& [key, value] : from.items()) {
    if (!into.contains(key)) {
      into[key] = value;
    } else if (value.is_object()) {
      add_into(into[key], value, largest);
    } else if (value.is_number()) {
      const bool keep_larger = std::find(largest.begin(), largest.end(), key) != largest.end();
      if (value.is_number_float() || into[key].is_number_float()) {
        const double sum = keep_larger ? std::max(into[key].get<double>(), value.get<double>())
                                       : into[key].get<double>() + value.get<double>();
        into[key] = sum;
      } else {
        const std::uint64_t sum = keep_larger
                                      ? std::max(into[key].get<std::uint64_t>(), value.get<std::uint64_t>())
                                      : into[key].get<std::uint64_t>() + value.get<std::uint64_t>();
        into[key] = sum;
      }
    }
  }
}

json status_share(const Worker& worker) {
  const auto& stats = worker.teardown_stats();
  std::uint64_t releases = 0;
  std::uint64_t violations = 0;
  for (const auto outcome : pool::kAllScopeOutcomes) {
    releases += stats.histogram(outcome).count();
    violations += stats.violations(outcome);
  }
  const auto& monitor = worker.loop_monitor();
  return {
      {"clients", client_counts_json(count_clients(worker, nullptr))},
      {"servers", server_counts(worker, nullptr)},
      {"loop",
       {{"lag_ms", round3(monitor.lag_ms())},
        {"max_lag_ms", round3(monitor.max_lag_ms())},
        {"slow_callbacks", monitor.slow_callbacks()},
        {"turns", monitor.turns()}}},
      {"teardown", {{"releases", releases}, {"violations", violations}}},
      {"forced", worker.forced_scopes()},
  };
}

json status_report(const Daemon& daemon, const std::vector<WorkerReport>& shares) {
  const auto now = Clock::now();
  json total = json::object();
  // A loop's lag is its own: the worst worker's is the daemon's.
  for (const auto& share : shares) add_into(total, share.part, {"lag_ms", "max_lag_ms"});
  total["teardown"]["sla_ms"] = daemon.config().teardown.sla_ms;
  // Live upgrades: clients that came or went with their connection (not counted in total).
  total["clients"]["moved_in"] = daemon.clients_moved_in();
  total["clients"]["moved_out"] = daemon.clients_moved_out();
  return {
      {"state", service_state_name(daemon.state())},
      {"version", kVersion},
      {"pid", ::getpid()},
      {"uptime_s", round3(seconds_since(daemon.started_at(), now))},
      {"workers", daemon.worker_count()},
      {"clients", total["clients"]},
      {"servers", total["servers"]},
      {"drain", drain_block(daemon, total["clients"], total["forced"].get<int>(), now)},
      {"loop", total["loop"]},
      {"teardown", total["teardown"]},
      {"fds", open_fds()},
      {"reload", reload_block(daemon, now)},
      {"upgrade", daemon.upgrade_report()},
  };
}

// A client's startup settings, as a pool's key holds them: {"application_name": "app", ...}.
json settings_json(const protocol::StartupSettings& settings) {
  json object = json::object();
  for (const auto& [name, value] : settings) object[name] = value;
  return object;
}

// Startup settings, overridden by session ones (SET ROLE shows as "role").
json client_settings_json(const ClientSession& client) {
  json object = client.pool() != nullptr ? settings_json(client.pool()->key().settings) : json::object();
  for (const auto& [name, value] : client.session_settings()) object[name] = value;
  return object;
}

// README "Limits against PgBouncer's names": what the limits did, summed over the workers.
json limits_json(const pool::Pool::LimitCounts& counts) {
  return {{"reserve_servers_opened", counts.reserve_servers_opened},
          {"limit_reached", counts.limit_reached},
          {"places_given_back", counts.places_given_back},
          {"checks_run", counts.checks_run},
          {"checks_failed", counts.checks_failed},
          {"query_timeouts", counts.query_timeouts},
          {"transaction_timeouts", counts.transaction_timeouts}};
}

json pools_share(const Worker& worker) {
  const auto now = Clock::now();
  json pools = json::array();
  for (const auto& [key, pool] : worker.pools()) {
    const ClientCounts clients = count_clients(worker, pool.get());
    const auto oldest = pool->oldest_wait();
    json servers = server_counts(worker, pool.get());
    servers.erase("total");
    pools.push_back({
        {"database", key.database},
        {"user", key.user},
        {"mode", pool->settings().pool_mode == config::PoolMode::session ? "session" : "transaction"},
        {"pool_size", pool->settings().pool_size},
        {"clients",
         {{"active", clients.active},
          {"idle", clients.idle},
          {"waiting", clients.waiting},
          {"pinned", clients.pinned}}},
        {"servers", servers},
        {"longest_wait_ms", oldest ? round3(seconds_since(*oldest, now) * 1000.0) : 0.0},
        {"waits",
         {{"count", pool->metrics().wait.count()},
          {"total_ms", round3(static_cast<double>(pool->metrics().wait.sum()) / 1e6)}}},
        {"prepared_statements", pool->prepared_statement_count()},
        {"limits", limits_json(pool->limit_counts())},
        {"settings", settings_json(key.settings)},
    });
  }
  return pools;
}

// A pool is one per worker: the rows of one (database, user) add up (each
// worker holds its share of pool_size); the longest wait is the longest, and
// each worker names the statements its clients prepare, so the largest count
// is the pool's.
json pools_report(const std::vector<WorkerReport>& shares) {
  std::map<std::string, json> pools;
  for (const auto& share : shares) {
    for (const auto& row : share.part) {
      json& pool = pools[json::array({row["database"], row["user"], row["settings"]}).dump()];
      if (pool.is_null()) {
        pool = row;
      } else {
        add_into(pool, row, {"longest_wait_ms", "prepared_statements"});
      }
    }
  }
  json rows = json::array();
  for (auto& [key, pool] : pools) rows.push_back(std::move(pool));
  return {{"pools", rows}};
}

json clients_share(const Worker& worker) {
  const auto now = Clock::now();
  json rows = json::array();
  for (const auto& client : worker.clients()) {
    rows.push_back({
        {"id", client->id()},
        {"state", client_state_name(client->state())},
        {"pool", client->pool() != nullptr ? json(client->pool()->name()) : json(nullptr)},
        {"worker", worker.index()},
        {"age_s", round3(seconds_since(client->connected_at(), now))},
        {"state_age_s", round3(seconds_since(client->state_since(), now))},
        {"prepared_statements", client->prepared_statement_count()},
        {"transport", client->transport() == Transport::tcp ? "tcp" : "unix"},
        {"tls", client->tls() != nullptr ? json(client->tls()->version()) : json(nullptr)},
        // How it proved who it is ("trust", "peer", "md5", "scram-sha-256", "cert"; hba: the method
        // its rule named), null until it has.
        {"auth",
         client->auth_method() ? json(frontend::auth_method_name(*client->auth_method())) : json(nullptr)},
        // Why it keeps its server between transactions (transaction mode), or null.
        {"pinned", client->pinned_because().empty() ? json(nullptr) : json(client->pinned_because())},
        // Its startup settings and those its SETs left in force: the table shows how many, --json which.
        {"settings", client_settings_json(*client)},
    });
  }
  return rows;
}

json servers_share(const Worker& worker) {
  const auto now = Clock::now();
  json rows = json::array();
  for (const auto& entry : worker.pools()) {
    const pool::Pool& pool = *entry.second;  // named: a structured binding cannot be captured (C++20, clang)
    pool.for_each_server([&](const pool::ServerConnection& server) {
      rows.push_back({
          {"id", server.id()},
          {"state", pool::state_name(server.state())},
          {"pool", pool.name()},
          {"worker", worker.index()},
          {"backend_pid", server.backend_pid()},
          {"age_s", round3(seconds_since(server.created_at(), now))},
          {"state_age_s", round3(seconds_since(server.state_since(), now))},
          {"prepared_statements", server.prepared_statement_count()},
      });
    });
  }
  return rows;
}

// Rows of every worker, sorted by id (ids are daemon-wide).
json concatenated_rows(const std::vector<WorkerReport>& shares) {
  json rows = json::array();
  for (const auto& share : shares) {
    for (const auto& row : share.part) rows.push_back(row);
  }
  std::sort(rows.begin(), rows.end(), [](const json& a, const json& b) {
    return a["id"].get<std::uint64_t>() < b["id"].get<std::uint64_t>();
  });
  return rows;
}

json teardown_report(const Daemon& daemon, std::vector<WorkerReport>& shares) {
  pool::TeardownStats stats = std::move(shares.front().teardown);
  for (std::size_t i = 1; i < shares.size(); ++i) stats.merge(shares[i].teardown);
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

}  // namespace

WorkerReport worker_report(const Worker& worker, ControlCommand command) {
  switch (command) {
    case ControlCommand::status:
      return {status_share(worker), {}};
    case ControlCommand::pools:
      return {pools_share(worker), {}};
    case ControlCommand::clients:
      return {clients_share(worker), {}};
    case ControlCommand::servers:
      return {servers_share(worker), {}};
    case ControlCommand::teardown:
      return {nullptr, worker.teardown_stats()};
    default:
      return {};
  }
}

json combine_reports(const Daemon& daemon, ControlCommand command, std::vector<WorkerReport> shares) {
  switch (command) {
    case ControlCommand::status:
      return status_report(daemon, shares);
    case ControlCommand::pools:
      return pools_report(shares);
    case ControlCommand::clients:
      return {{"clients", concatenated_rows(shares)}};
    case ControlCommand::servers:
      return {{"servers", concatenated_rows(shares)}};
    case ControlCommand::teardown:
      return teardown_report(daemon, shares);
    default:
      return {{"error", "not a report"}};
  }
}

}  // namespace sluice::daemon
