// The /metrics text: histogram buckets that are exact and cumulative, both exposition formats,
// label escaping, the bucket edges the export relies on, and the HTTP request head reader.
#include <gtest/gtest.h>

#include <string>

#include "metrics/exposition.h"
#include "metrics/http_request.h"
#include "metrics/latency_histogram.h"

namespace sluice::metrics {
namespace {

// The sample line that starts with `prefix` (name and labels), or "" when there is none.
std::string line_of(const std::string& text, const std::string& prefix) {
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    if (line.rfind(prefix + " ", 0) == 0) return line;
    at = end == std::string::npos ? text.size() : end + 1;
  }
  return "";
}

TEST(LatencyHistogram, EveryExportedBoundIsABucketEdge) {
  for (const std::uint64_t bound : bucket_bounds_ns())
    EXPECT_TRUE(LatencyHistogram::is_bucket_edge(bound)) << bound;
  EXPECT_FALSE(LatencyHistogram::is_bucket_edge(1000000));  // 1 ms is not: the bounds are powers of two
}

TEST(LatencyHistogram, CumulativeCountsAreExactAtTheEdges) {
  LatencyHistogram histogram;
  histogram.record(4096);  // exactly the first bound: counted in it (le is <=)
  histogram.record(4097);
  histogram.record(8192);
  histogram.record(1);
  histogram.record(40000000000);  // past the last bound: only in +Inf
  const auto bounds = bucket_bounds_ns();
  std::array<std::uint64_t, kBoundCount> counts{};
  histogram.cumulative_counts(bounds, counts);
  EXPECT_EQ(counts[0], 2U);  // 1 and 4096
  EXPECT_EQ(counts[1], 4U);  // and 4097, 8192
  EXPECT_EQ(counts[kBoundCount - 1], 4U);
  EXPECT_EQ(histogram.count(), 5U);
  EXPECT_EQ(histogram.sum(), 1U + 4096 + 4097 + 8192 + 40000000000);
}

TEST(MetricsExposition, NanosAsExactSeconds) {
  EXPECT_EQ(nanos_as_seconds(0), "0");
  EXPECT_EQ(nanos_as_seconds(4096), "0.000004096");
  EXPECT_EQ(nanos_as_seconds(2000000000), "2");
  EXPECT_EQ(nanos_as_seconds(34359738368), "34.359738368");
}

Snapshot sample_snapshot() {
  Snapshot snapshot;
  snapshot.version = "1.2.3";
  snapshot.state = "draining";
  snapshot.teardown_sla_seconds = 0.005;
  PoolSample pool;
  pool.database = "app";
  pool.user = "we\"ird\\na\nme";
  pool.pool_size = 10;
  pool.clients_active = 3;
  pool.metrics.query.record(5000);
  pool.metrics.query.record(3000000);
  pool.metrics.connects_failed = 2;
  snapshot.pools.push_back(pool);
  snapshot.teardown.record(pool::ScopeOutcome::rollback, std::chrono::microseconds(100), "app/u", 1, "test");
  snapshot.clients.error_sent("42P01");
  snapshot.clients.login(LoginResult::ok);
  WorkerSample worker;
  worker.index = 0;
  worker.loop_lag.record(1000);
  snapshot.workers.push_back(worker);
  return snapshot;
}

TEST(MetricsExposition, PrometheusTextHasCumulativeBucketsSumAndCount) {
  const std::string text = render(sample_snapshot(), Format::prometheus);
  const std::string labels = R"(database="app",user="we\"ird\\na\nme")";
  EXPECT_NE(text.find("# TYPE sluice_query_duration_seconds histogram\n"), std::string::npos);
  EXPECT_EQ(line_of(text, "sluice_query_duration_seconds_bucket{" + labels + ",le=\"0.000004096\"}"),
            "sluice_query_duration_seconds_bucket{" + labels + ",le=\"0.000004096\"} 0");
  EXPECT_EQ(line_of(text, "sluice_query_duration_seconds_bucket{" + labels + ",le=\"0.000008192\"}"),
            "sluice_query_duration_seconds_bucket{" + labels + ",le=\"0.000008192\"} 1");
  EXPECT_EQ(line_of(text, "sluice_query_duration_seconds_bucket{" + labels + ",le=\"+Inf\"}"),
            "sluice_query_duration_seconds_bucket{" + labels + ",le=\"+Inf\"} 2");
  EXPECT_EQ(line_of(text, "sluice_query_duration_seconds_sum{" + labels + "}"),
            "sluice_query_duration_seconds_sum{" + labels + "} 0.003005");
  EXPECT_EQ(line_of(text, "sluice_query_duration_seconds_count{" + labels + "}"),
            "sluice_query_duration_seconds_count{" + labels + "} 2");
  // Counters are named by their sample in this format; there is no EOF marker.
  EXPECT_NE(text.find("# TYPE sluice_server_connects_total counter\n"), std::string::npos);
  EXPECT_EQ(line_of(text, "sluice_server_connects_total{" + labels + ",result=\"failed\"}"),
            "sluice_server_connects_total{" + labels + ",result=\"failed\"} 2");
  EXPECT_EQ(line_of(text, "sluice_client_errors_total{class=\"42\"}"),
            "sluice_client_errors_total{class=\"42\"} 1");
  EXPECT_EQ(line_of(text, "sluice_teardown_duration_seconds_count{outcome=\"rollback\"}"),
            "sluice_teardown_duration_seconds_count{outcome=\"rollback\"} 1");
  EXPECT_EQ(line_of(text, "sluice_state{state=\"draining\"}"), "sluice_state{state=\"draining\"} 1");
  EXPECT_EQ(line_of(text, "sluice_state{state=\"running\"}"), "sluice_state{state=\"running\"} 0");
  EXPECT_NE(text.find("# TYPE sluice_build_info gauge\nsluice_build_info{version=\"1.2.3\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("# EOF"), std::string::npos);
}

TEST(MetricsExposition, OpenMetricsNamesFamiliesWithoutSuffixesAndEnds) {
  const std::string text = render(sample_snapshot(), Format::openmetrics);
  EXPECT_NE(text.find("# TYPE sluice_server_connects counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE sluice_build info\nsluice_build_info{version=\"1.2.3\"} 1\n"),
            std::string::npos);
  EXPECT_TRUE(text.ends_with("# EOF\n"));
}

// A role name is whatever a startup packet said: bytes that are not UTF-8 would make Prometheus refuse
// the whole scrape. OpenMetrics escapes quotes in HELP as in label values; the 0.0.4 text does not.
TEST(MetricsExposition, LabelValuesAreMadeValidUtf8AndOpenMetricsHelpEscapesQuotes) {
  Snapshot snapshot = sample_snapshot();
  snapshot.pools[0].user = "caf\xC3\xA9\xFF\xC0\xAFx\xE2\x82";  // é, three bad bytes, x, a cut-off €
  const std::string replacement = "\xEF\xBF\xBD";
  const std::string text = render(snapshot, Format::prometheus);
  const std::string user =
      "user=\"caf\xC3\xA9" + replacement + replacement + replacement + "x" + replacement + replacement + "\"";
  EXPECT_NE(text.find("sluice_pool_size{database=\"app\"," + user + "} 10"), std::string::npos) << user;
  EXPECT_NE(text.find("(README \"Drain\")"), std::string::npos);
  const std::string open_metrics = render(snapshot, Format::openmetrics);
  EXPECT_NE(open_metrics.find("(README \\\"Drain\\\")"), std::string::npos);
  EXPECT_EQ(open_metrics.find("(README \"Drain\")"), std::string::npos);
}

TEST(MetricsExposition, FormatFollowsTheAcceptHeader) {
  EXPECT_EQ(format_for_accept(""), Format::prometheus);
  EXPECT_EQ(format_for_accept("text/plain;version=0.0.4;q=0.3,*/*;q=0.1"), Format::prometheus);
  EXPECT_EQ(format_for_accept("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
            Format::openmetrics);
}

TEST(HttpRequest, ReadsMethodPathAndAccept) {
  const auto request = parse_http_request(
      "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: application/openmetrics-text\r\n\r\n", 8192);
  ASSERT_EQ(request.status, HttpRequest::Status::complete);
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.path, "/metrics");
  EXPECT_EQ(request.accept, "application/openmetrics-text");
  EXPECT_EQ(parse_http_request("GET /metrics HTTP/1.0\n\n", 8192).status, HttpRequest::Status::complete);
}

TEST(HttpRequest, IncompleteUntilTheEmptyLineThenBounded) {
  EXPECT_EQ(parse_http_request("GET /metrics HTTP/1.1\r\nHost: a\r\n", 8192).status,
            HttpRequest::Status::incomplete);
  EXPECT_EQ(parse_http_request(std::string(100, 'a'), 64).status, HttpRequest::Status::too_large);
  const std::string long_head = "GET /metrics HTTP/1.1\r\nX: " + std::string(100, 'a') + "\r\n\r\n";
  EXPECT_EQ(parse_http_request(long_head, 64).status, HttpRequest::Status::too_large);
}

TEST(HttpRequest, TheHeadEndIsFoundFromWhereTheLastSearchStopped) {
  const std::string head = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(find_head_end(head), head.size());
  // Fed byte by byte, searching from two bytes before the previous end finds it exactly once.
  std::size_t scanned = 0;
  std::size_t found_at = 0;
  for (std::size_t size = 1; size <= head.size(); ++size) {
    const std::size_t end =
        find_head_end(std::string_view(head).substr(0, size), scanned > 2 ? scanned - 2 : 0);
    scanned = size;
    if (end != std::string::npos) {
      found_at = size;
      break;
    }
  }
  EXPECT_EQ(found_at, head.size());
  EXPECT_EQ(find_head_end("GET / HTTP/1.0\n\n"), 16U);
  EXPECT_EQ(find_head_end("GET / HTTP/1.1\r\nX: y\r\n"), std::string::npos);
}

TEST(HttpRequest, RejectsWhatIsNotHttp) {
  for (const char* head : {"\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/2\r\n\r\n",
                           "G(T /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
                           "\x16\x03\x01\x02\n\n"}) {
    EXPECT_EQ(parse_http_request(head, 8192).status, HttpRequest::Status::bad) << head;
  }
}

}  // namespace
}  // namespace sluice::metrics
