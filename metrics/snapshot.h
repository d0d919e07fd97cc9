// Everything /metrics shows, gathered from the workers and combined on the
// main loop (daemon/metrics_snapshot.h); plain data, so that the exposition
// format (metrics/exposition.h) is a pure function of it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metrics/client_counters.h"
#include "metrics/latency_histogram.h"
#include "metrics/pool_metrics.h"
#include "pool/teardown_stats.h"

namespace sluice::metrics {

// The `user` of a database's departed users: the counters of pairs no worker has a pool of any
// more. PostgreSQL has no role without a name, so it names nobody.
inline constexpr const char* kDepartedUsers = "";

// One (database, user): its pools of every startup setting on every worker, added up.
struct PoolSample {
  std::string database;
  std::string user;
  bool departed = false;  // kDepartedUsers: counters and histograms only, no gauges
  bool live = false;      // a pool of the pair exists on some worker, not only counters it left
  int pool_size = 0;      // configured, for the whole daemon
  int clients_active = 0;
  int clients_idle = 0;
  int clients_waiting = 0;
  int clients_pinned = 0;  // also counted in one of the states above
  std::uint64_t servers_active = 0;
  std::uint64_t servers_idle = 0;
  std::uint64_t servers_connecting = 0;
  std::uint64_t servers_resetting = 0;
  std::uint64_t servers_departing = 0;  // closed, their backends still PostgreSQL's
  std::uint64_t prepared_statements = 0;
  PoolMetrics metrics;
};

struct WorkerSample {
  std::size_t index = 0;
  LatencyHistogram loop_lag;
  std::uint64_t slow_callbacks = 0;
  int clients_logging_in = 0;  // startup packet or login not yet done: no pool yet
};

struct ReloadCounts {
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  std::optional<bool> last_ok;  // nullopt: none yet
  double last_at_seconds = 0;   // Unix time of the last one
};

struct Snapshot {
  std::string version;
  double start_time_seconds = 0;  // Unix time
  std::string state;              // running, paused, draining, drained, stopped
  int drain_forced_scopes = 0;    // the current or last drain's
  ReloadCounts reloads;
  double teardown_sla_seconds = 0;
  pool::TeardownStats teardown;  // every worker's, merged
  ClientCounters clients;        // every worker's, merged
  std::vector<WorkerSample> workers;
  std::vector<PoolSample> pools;  // sorted by (database, user)
};

}  // namespace sluice::metrics
