// The JSON answers of the control socket's read-only commands (shapes
// documented in README.md). Each worker gives its share on its own loop; the
// daemon combines the shares on the main loop.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "daemon/control_request.h"
#include "pool/teardown_stats.h"

namespace sluice::daemon {

class Daemon;
class Worker;

// One worker's share of a report: JSON for status, pools, clients and
// servers; its telemetry for teardown (histograms add up, percentiles do not).
struct WorkerReport {
  nlohmann::json part;
  pool::TeardownStats teardown;
};

// On the worker's loop. `command` is one of the read-only commands.
WorkerReport worker_report(const Worker& worker, ControlCommand command);
// On the main loop, with every worker's share (in worker order).
nlohmann::json combine_reports(const Daemon& daemon, ControlCommand command,
                               std::vector<WorkerReport> shares);

}  // namespace sluice::daemon
