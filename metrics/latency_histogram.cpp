#include "metrics/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace sluice::metrics {
namespace {

constexpr int kSubBits = LatencyHistogram::kSubBits;

// The largest value with that index.
std::uint64_t log_linear_last(int index) {
  const int group = index >> kSubBits;
  const std::uint64_t sub = static_cast<std::uint64_t>(index) & ((1U << kSubBits) - 1);
  if (group == 0) return sub;
  const int shift = group - 1;
  return (((std::uint64_t{1} << kSubBits) | sub) << shift) + ((std::uint64_t{1} << shift) - 1);
}

}  // namespace

std::uint64_t LatencyHistogram::bucket_upper(int bucket) {
  return bucket == 0 ? 0 : log_linear_last(bucket - 1) + 1;
}

bool LatencyHistogram::is_bucket_edge(std::uint64_t nanos) { return bucket_upper(bucket_of(nanos)) == nanos; }

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
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

void LatencyHistogram::cumulative_counts(std::span<const std::uint64_t> bounds,
                                         std::span<std::uint64_t> counts) const {
  std::uint64_t seen = 0;
  int bucket = 0;
  for (std::size_t i = 0; i < bounds.size() && i < counts.size(); ++i) {
    for (; bucket < kBuckets && bucket_upper(bucket) <= bounds[i]; ++bucket) {
      seen += buckets_[static_cast<std::size_t>(bucket)];
    }
    counts[i] = seen;
  }
}

}  // namespace sluice::metrics
