// A client's view of its requests through sluiced, for the query and
// transaction histograms: a query runs from the first byte the client sends
// after being answered until all it sent is answered; a transaction from its
// first query until ReadyForQuery 'I'. Time spent waiting for a server counts:
// the client waited. The caller passes the times: on the common path they are
// the turn clock's (net/turn_clock.h), which its state changes read anyway.
#pragma once

#include <chrono>

#include "metrics/pool_metrics.h"

namespace sluice::metrics {

class RequestTimer {
 public:
  using Clock = std::chrono::steady_clock;

  [[nodiscard]] bool query_outstanding() const { return query_started_ != Clock::time_point{}; }
  // The client sent bytes at `at`; only the first of a query counts.
  void client_sent(Clock::time_point at) {
    if (query_outstanding()) return;
    query_started_ = at;
    if (transaction_started_ == Clock::time_point{}) transaction_started_ = at;
  }
  // Everything the client sent was answered at `at`; `transaction_status` is ReadyForQuery's.
  void answered(char transaction_status, Clock::time_point at, PoolMetrics& metrics) {
    if (!query_outstanding()) return;
    metrics.query.record(nanos_between(query_started_, at));
    query_started_ = {};
    if (transaction_status != 'I') return;
    metrics.transaction.record(nanos_between(transaction_started_, at));
    transaction_started_ = {};
  }

 private:
  static std::uint64_t nanos_between(Clock::time_point from, Clock::time_point to) {
    const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
    return nanos > 0 ? static_cast<std::uint64_t>(nanos) : 0;
  }

  Clock::time_point query_started_{};  // epoch: no query outstanding
  Clock::time_point transaction_started_{};
};

}  // namespace sluice::metrics
