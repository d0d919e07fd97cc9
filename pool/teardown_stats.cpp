#include "pool/teardown_stats.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "common/log.h"

namespace sluice::pool {

int LatencyHistogram::bucket_of(std::uint64_t nanos) {
  if (nanos < (1U << kSubBits)) return static_cast<int>(nanos);
  const int magnitude = static_cast<int>(std::bit_width(nanos)) - 1;  // >= kSubBits
  const int shift = magnitude - kSubBits;
  const auto sub = static_cast<int>((nanos >> shift) & ((1U << kSubBits) - 1));
  return ((shift + 1) << kSubBits) + sub;
}

std::uint64_t LatencyHistogram::bucket_upper(int bucket) {
  const int group = bucket >> kSubBits;
  const std::uint64_t sub = static_cast<std::uint64_t>(bucket) & ((1U << kSubBits) - 1);
  if (group == 0) return sub;
  const int shift = group - 1;
  return (((std::uint64_t{1} << kSubBits) | sub) << shift) + ((std::uint64_t{1} << shift) - 1);
}

void LatencyHistogram::record(std::uint64_t nanos) {
  ++buckets_[static_cast<std::size_t>(bucket_of(nanos))];
  ++count_;
  if (nanos > max_) max_ = nanos;
}

std::uint64_t LatencyHistogram::percentile(double p) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (int bucket = 0; bucket < kBuckets; ++bucket) {
    seen += buckets_[static_cast<std::size_t>(bucket)];
    if (seen >= rank && seen > 0) return std::min(bucket_upper(bucket), max_);
  }
  return max_;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t bucket = 0; bucket < buckets_.size(); ++bucket) buckets_[bucket] += other.buckets_[bucket];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

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
