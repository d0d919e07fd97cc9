// Teardown telemetry: per-outcome latency histograms, the SLA, and the most
// recent violations with their context (DESIGN.md §1).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "metrics/latency_histogram.h"
#include "pool/scope_outcome.h"

namespace sluice::pool {

using metrics::LatencyHistogram;

struct SlaViolation {
  ScopeOutcome outcome;
  std::string pool;
  std::uint64_t client_id;
  std::uint64_t nanos;
  int active_scopes;
  std::string reason;
  std::chrono::system_clock::time_point at;
};

class TeardownStats {
 public:
  static constexpr std::size_t kRecentViolations = 32;

  void set_sla(std::chrono::nanoseconds sla) { sla_ = sla; }
  [[nodiscard]] std::chrono::nanoseconds sla() const { return sla_; }

  // Records one release; logs and keeps it when over the SLA. Nothing is
  // allocated unless it is a violation: this runs once per transaction.
  void record(ScopeOutcome outcome, std::chrono::nanoseconds duration, std::string_view pool,
              std::uint64_t client_id, std::string_view reason);

  void scope_started() { ++active_scopes_; }
  void scope_ended() { --active_scopes_; }
  [[nodiscard]] int active_scopes() const { return active_scopes_; }

  [[nodiscard]] const LatencyHistogram& histogram(ScopeOutcome outcome) const {
    return histograms_[static_cast<std::size_t>(outcome)];
  }
  [[nodiscard]] std::uint64_t violations(ScopeOutcome outcome) const {
    return violations_[static_cast<std::size_t>(outcome)];
  }
  [[nodiscard]] const std::deque<SlaViolation>& recent_violations() const { return recent_; }

  // Adds another worker's releases; the recent violations stay the latest kRecentViolations.
  void merge(const TeardownStats& other);

 private:
  std::chrono::nanoseconds sla_{5000000};
  std::array<LatencyHistogram, kScopeOutcomeCount> histograms_{};
  std::array<std::uint64_t, kScopeOutcomeCount> violations_{};
  std::deque<SlaViolation> recent_;
  int active_scopes_ = 0;
};

}  // namespace sluice::pool
