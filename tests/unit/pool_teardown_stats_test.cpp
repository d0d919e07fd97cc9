// Merging the workers' teardown telemetry: histograms add up, so the merged percentiles are those
// of all the samples; the recent violations stay the latest few, in time order.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "pool/teardown_stats.h"

namespace sluice::pool {
namespace {

using namespace std::chrono_literals;

TEST(LatencyHistogram, MergedPercentilesAreThoseOfAllTheSamples) {
  LatencyHistogram low;
  LatencyHistogram high;
  LatencyHistogram all;
  for (std::uint64_t n = 1; n <= 900; ++n) {
    low.record(n * 1000);
    all.record(n * 1000);
  }
  for (std::uint64_t n = 1; n <= 100; ++n) {
    high.record(n * 1000000);
    all.record(n * 1000000);
  }
  low.merge(high);
  EXPECT_EQ(low.count(), 1000U);
  EXPECT_EQ(low.max(), 100000000U);
  for (const double p : {50.0, 90.0, 95.0, 99.0, 100.0}) EXPECT_EQ(low.percentile(p), all.percentile(p)) << p;
  EXPECT_GT(low.percentile(95), 1000000U);  // from the other histogram's samples
}

TEST(TeardownStats, MergeAddsCountsAndKeepsTheLatestViolations) {
  TeardownStats first;
  TeardownStats second;
  first.set_sla(1ms);
  second.set_sla(1ms);
  for (int i = 0; i < 20; ++i) first.record(ScopeOutcome::clean, 10us, "db/u", 1, "ok");
  for (int i = 0; i < 30; ++i) first.record(ScopeOutcome::rollback, 2ms, "db/u", 2, "first");
  std::this_thread::sleep_for(2ms);  // the second's violations are the later ones
  for (int i = 0; i < 10; ++i) second.record(ScopeOutcome::rollback, 3ms, "db/u", 3, "second");
  second.record(ScopeOutcome::cancel, 10us, "db/u", 4, "ok");

  first.merge(second);
  EXPECT_EQ(first.histogram(ScopeOutcome::clean).count(), 20U);
  EXPECT_EQ(first.histogram(ScopeOutcome::rollback).count(), 40U);
  EXPECT_EQ(first.histogram(ScopeOutcome::cancel).count(), 1U);
  EXPECT_EQ(first.violations(ScopeOutcome::rollback), 40U);
  const auto& recent = first.recent_violations();
  ASSERT_EQ(recent.size(), TeardownStats::kRecentViolations);
  // 30 + 10 violations, the 32 latest kept: the first's 22 latest, then the second's 10.
  EXPECT_EQ(recent.front().reason, "first");
  EXPECT_EQ(recent.back().reason, "second");
  EXPECT_EQ(recent[22].reason, "second");
  EXPECT_EQ(recent[21].reason, "first");
}

}  // namespace
}  // namespace sluice::pool
