// The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text of a
// Snapshot. Pure: unit-tested, and checked by prometheus_client's strict parser
// in the integration tests. Histograms are classic ones (cumulative
// `_bucket{le=...}` with +Inf, `_sum`, `_count`) over fixed bounds: powers of
// two nanoseconds, the exact bucket edges of LatencyHistogram.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "metrics/snapshot.h"

namespace sluice::metrics {

enum class Format { prometheus, openmetrics };

// OpenMetrics when the scraper's Accept header asks for it, else the Prometheus text format.
Format format_for_accept(std::string_view accept);
std::string_view content_type(Format format);

// 2^12 ns (4.096 us) to 2^35 ns (34.4 s).
inline constexpr int kFirstBoundExponent = 12;
inline constexpr int kBoundCount = 24;
std::array<std::uint64_t, kBoundCount> bucket_bounds_ns();

// Nanoseconds as exact decimal seconds: 4096 -> "0.000004096", 2000000000 -> "2".
std::string nanos_as_seconds(std::uint64_t nanos);

std::string render(const Snapshot& snapshot, Format format);

}  // namespace sluice::metrics
