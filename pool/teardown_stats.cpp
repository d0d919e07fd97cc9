#include "pool/teardown_stats.h"

#include <algorithm>

#include "common/log.h"

namespace sluice::pool {

void TeardownStats::merge(const TeardownStats& other) {
  for (std::size_t outcome = 0; outcome < kScopeOutcomeCount; ++outcome) {
    histograms_[outcome].merge(other.histograms_[outcome]);
    violations_[outcome] += other.violations_[outcome];
  }
  active_scopes_ += other.active_scopes_;
  recent_.insert(recent_.end(), other.recent_.begin(), other.recent_.end());
  std::stable_sort(recent_.begin(), recent_.end(),
                   [](const SlaViolation& a, const SlaViolation& b) { return a.at < b.at; });
  while (recent_.size() > kRecentViolations) recent_.pop_front();
}

void TeardownStats::record(ScopeOutcome outcome, std::chrono::nanoseconds duration, std::string_view pool,
                           std::uint64_t client_id, std::string_view reason) {
  const auto index = static_cast<std::size_t>(outcome);
  const auto nanos = static_cast<std::uint64_t>(duration.count() < 0 ? 0 : duration.count());
  histograms_[index].record(nanos);
  if (duration <= sla_) return;
  ++violations_[index];
  log::warning("teardown SLA violated: outcome=", outcome_name(outcome), " pool=", pool,
               " client=", client_id, " duration_us=", nanos / 1000, " sla_us=", sla_.count() / 1000,
               " active_scopes=", active_scopes_, " reason=\"", reason, "\"");
  recent_.push_back({outcome, std::string(pool), client_id, nanos, active_scopes_, std::string(reason),
                     std::chrono::system_clock::now()});
  if (recent_.size() > kRecentViolations) recent_.pop_front();
}

}  // namespace sluice::pool
