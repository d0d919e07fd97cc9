// /metrics' numbers: each worker takes its share on its own loop (the
// counters its pools, clients, loop and releases keep), the daemon adds the
// shares up on the main loop (histograms bucket by bucket) and adds its own.
#pragma once

#include <vector>

#include "metrics/snapshot.h"

namespace sluice::daemon {

class Daemon;
class Worker;

struct MetricsShare {
  metrics::WorkerSample worker;
  std::vector<metrics::PoolSample> pools;  // one per (database, user), sorted
  pool::TeardownStats teardown;
  metrics::ClientCounters clients;
  int forced_scopes = 0;  // this drain's, as the status report counts them
};

// On the worker's loop.
MetricsShare metrics_share(const Worker& worker);
// On the main loop, with every worker's share.
metrics::Snapshot combine_metrics(const Daemon& daemon, const std::vector<MetricsShare>& shares);

}  // namespace sluice::daemon
