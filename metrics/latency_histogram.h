// A latency histogram over nanoseconds with fixed log-linear buckets: 16
// sub-buckets per power of two keep any percentile within ~6% while the whole
// histogram stays a fixed array, so recording costs a few instructions and no
// allocation (it runs once per transaction). Every power of two (from 16 ns)
// is a bucket's upper edge, which is what the Prometheus export reads.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>

namespace sluice::metrics {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;  // 16 sub-buckets per power of two

  // Inline: it runs a few times per transaction.
  void record(std::uint64_t nanos) {
    ++buckets_[static_cast<std::size_t>(bucket_of(nanos))];
    ++count_;
    sum_ += nanos;
    if (nanos > max_) max_ = nanos;
  }
  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] std::uint64_t sum() const { return sum_; }
  [[nodiscard]] std::uint64_t max() const { return max_; }
  // Upper bound of the bucket holding the p-th percentile (0 < p <= 100).
  [[nodiscard]] std::uint64_t percentile(double p) const;
  // Adds another histogram's samples (the workers' reports).
  void merge(const LatencyHistogram& other);
  // For each bound (ascending, each a bucket's upper edge: a power of two from 16), how many
  // samples are <= it: exact, as a Prometheus bucket's `le` means.
  void cumulative_counts(std::span<const std::uint64_t> bounds, std::span<std::uint64_t> counts) const;
  // True when `nanos` is a bucket's upper edge, so that cumulative_counts is exact there.
  static bool is_bucket_edge(std::uint64_t nanos);

 private:
  // Bucket 0 holds 0; bucket b > 0 holds (upper(b - 1), upper(b)].
  static constexpr int kBuckets = ((64 - kSubBits + 1) << kSubBits) + 1;
  // Shifted by one from the log-linear index so that each bucket includes its upper edge (Prometheus'
  // `le` is <=): exact below 17, then 16 sub-buckets per power of two.
  static int bucket_of(std::uint64_t nanos) {
    if (nanos <= (1U << kSubBits)) return static_cast<int>(nanos);
    const std::uint64_t value = nanos - 1;
    const int shift = static_cast<int>(std::bit_width(value)) - 1 - kSubBits;
    const auto sub = static_cast<int>((value >> shift) & ((1U << kSubBits) - 1));
    return ((shift + 1) << kSubBits) + sub + 1;
  }
  static std::uint64_t bucket_upper(int bucket);

  // The totals before the 7.8 KB of buckets: a record writes both, and a latency under a second
  // lands in the first half of the array, so often on the totals' page, never with them at the far
  // end (README, "Pages, not instructions, on the AMD EPYC host": each page a stretch between
  // system calls touches costs).
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::array<std::uint64_t, kBuckets> buckets_{};
};

}  // namespace sluice::metrics
