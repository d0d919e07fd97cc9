// What one pool of one worker counts for /metrics (README "Metrics"): plain
// numbers bumped on the loop that owns the pool, added up across workers when
// a scrape gathers them.
#pragma once

#include <cstdint>

#include "metrics/latency_histogram.h"

namespace sluice::metrics {

struct PoolMetrics {
  LatencyHistogram wait;         // acquisitions that queued: time in the queue
  LatencyHistogram query;        // a client's request until all it sent is answered
  LatencyHistogram transaction;  // a client's first request until ReadyForQuery 'I'
  LatencyHistogram connect;      // server connects that succeeded: start until ready
  std::uint64_t connects_failed = 0;
  std::uint64_t client_bytes_received = 0;
  std::uint64_t client_bytes_sent = 0;

  void merge(const PoolMetrics& other) {
    wait.merge(other.wait);
    query.merge(other.query);
    transaction.merge(other.transaction);
    connect.merge(other.connect);
    connects_failed += other.connects_failed;
    client_bytes_received += other.client_bytes_received;
    client_bytes_sent += other.client_bytes_sent;
  }
};

}  // namespace sluice::metrics
