// The /metrics endpoint as an HTTP server (issue 17 §1): both exposition formats, accepted by
// prometheus_client's strict parsers, over TCP and a Unix socket; the right status for every bad
// request; and hostile scrapers — byte by byte forever, never reading, 1 MB of headers, many at
// once — cannot hurt the pooler: its clients keep being served meanwhile.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/metrics_scrape.h"

namespace {

using harness::PgConn;
using namespace std::chrono_literals;

// A raw connection to the metrics Unix socket, for scrapers that misbehave.
class RawScraper {
 public:
  explicit RawScraper(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
      throw std::runtime_error("cannot connect to " + path + ": " + std::strerror(errno));
  }
  ~RawScraper() { ::close(fd_); }
  RawScraper(const RawScraper&) = delete;
  RawScraper& operator=(const RawScraper&) = delete;

  bool send(const std::string& bytes) const {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // Everything until the server closes (or `timeout`); `closed` says whether it did.
  std::string read_until_closed(std::chrono::milliseconds timeout, bool& closed) const {
    std::string received;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    closed = false;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) {
        closed = true;
        break;
      }
      received.append(buffer, static_cast<std::size_t>(n));
    }
    return received;
  }

 private:
  int fd_;
};

// Clients keep being served while `misbehave` runs: a query per few milliseconds, none slow.
void expect_clients_served_during(const harness::Sluiced& sluiced, const std::function<void()>& misbehave) {
  std::atomic<bool> done{false};
  std::atomic<int> queries{0};
  std::atomic<long> slowest_ms{0};
  std::string failure;  // read once the thread has joined
  std::atomic<bool> failed{false};
  std::thread client([&] {
    try {
      const PgConn conn = harness::connect(sluiced.conninfo());
      harness::exec_ok(conn, "select 1");  // the pool's first server login is not what is timed
      while (!done) {
        const auto started = std::chrono::steady_clock::now();
        harness::exec_ok(conn, "select 1");
        const long ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                .count();
        if (ms > slowest_ms) slowest_ms = ms;
        ++queries;
        std::this_thread::sleep_for(5ms);
      }
    } catch (const std::exception& error) {
      failure = error.what();
      failed = true;
    }
  });
  // Queries run before, during and after the misbehaviour.
  EXPECT_TRUE(harness::wait_until([&] { return queries >= 3 || failed; }));
  misbehave();
  const int after_misbehaving = queries;
  EXPECT_TRUE(harness::wait_until([&] { return queries >= after_misbehaving + 3 || failed; }));
  done = true;
  client.join();
  EXPECT_EQ(failure, "");
  // A round trip takes a millisecond or two here, tens under the sanitizers on a loaded machine.
  EXPECT_LT(slowest_ms.load(), 1000) << "a query waited on the misbehaving scraper";
}

TEST(MetricsEndpoint, ServesBothFormatsOverTcpToTheStrictParsers) {
  const std::string address = "127.0.0.1:" + std::to_string(harness::free_tcp_port());
  harness::Sluiced sluiced(harness::metrics_config({}, address));
  const PgConn client = harness::connect(sluiced.conninfo());
  harness::exec_ok(client, "select 1");

  const harness::HttpAnswer text = harness::http_get(address);
  ASSERT_EQ(text.status, 200) << text.head;
  EXPECT_NE(text.head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8"), std::string::npos);
  EXPECT_NE(text.head.find("Connection: close"), std::string::npos);
  const auto metrics = harness::Metrics::parse(text.body);
  EXPECT_EQ(metrics.families().at("sluice_query_duration_seconds"), "histogram");
  EXPECT_EQ(metrics.families().at("sluice_server_connects"), "counter");

  const harness::HttpAnswer open =
      harness::http_get(address, "/metrics", "Accept: application/openmetrics-text; version=1.0.0\r\n");
  ASSERT_EQ(open.status, 200) << open.head;
  EXPECT_NE(open.head.find("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
            std::string::npos);
  EXPECT_TRUE(open.body.ends_with("# EOF\n"));
  const auto openmetrics = harness::Metrics::parse(open.body, /*openmetrics=*/true);
  EXPECT_EQ(openmetrics.families().at("sluice_build"), "info");
  EXPECT_EQ(openmetrics.value("sluice_query_duration_seconds_count", {{"database", "postgres"}}),
            metrics.value("sluice_query_duration_seconds_count", {{"database", "postgres"}}));
}

// A scrape accepted just before the daemon stops (or hands its sockets over in a live upgrade)
// is answered before it exits.
TEST(MetricsEndpoint, AScrapeAcceptedBeforeTheStopIsAnswered) {
  harness::Sluiced sluiced(harness::metrics_config());
  const RawScraper early(harness::metrics_socket(sluiced));
  // Accepted in order: once a later scrape is answered, `early` has been accepted.
  ASSERT_EQ(harness::http_get(harness::metrics_socket(sluiced)).status, 200);
  sluiced.send_signal(SIGTERM);
  ASSERT_TRUE(harness::wait_until([&] {
    return sluiced.log().find("drained: every client has left") != std::string::npos;
  })) << sluiced.log();
  ASSERT_TRUE(early.send("GET /metrics HTTP/1.1\r\nHost: sluice\r\n\r\n"));
  bool closed = false;
  const std::string answer = early.read_until_closed(5s, closed);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200")) << answer.substr(0, 200);
  EXPECT_TRUE(closed);
  const auto exit_status = sluiced.wait_exit(5s);
  ASSERT_TRUE(exit_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << "wait status " << *exit_status;
}

TEST(MetricsEndpoint, AnswersBadRequestsWithTheirStatus) {
  harness::Sluiced sluiced(harness::metrics_config());
  const std::string address = harness::metrics_socket(sluiced);
  EXPECT_EQ(harness::http_get(address, "/").status, 404);
  EXPECT_EQ(harness::http_get(address, "/metrics/x").status, 404);
  const auto post = harness::http_exchange(address, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.head.find("Allow: GET"), std::string::npos);
  EXPECT_EQ(harness::http_exchange(address, "hello\r\n\r\n").status, 400);
  EXPECT_EQ(harness::http_exchange(address, "GET /metrics HTTP/9\r\n\r\n").status, 400);
  EXPECT_EQ(harness::http_get(address, "/metrics?name[]=x").status, 200);  // a query string is ignored
}

TEST(MetricsEndpoint, AMegabyteOfHeadersIsRefusedWith431) {
  harness::Sluiced sluiced(harness::metrics_config());
  const std::string address = harness::metrics_socket(sluiced);
  expect_clients_served_during(sluiced, [&] {
    std::string request = "GET /metrics HTTP/1.1\r\n";
    while (request.size() < 1024 * 1024) request += "X-Filler: " + std::string(100, 'f') + "\r\n";
    request += "\r\n";
    EXPECT_EQ(harness::http_exchange(address, request).status, 431);
  });
  EXPECT_EQ(harness::http_get(address).status, 200);
}

TEST(MetricsEndpoint, AScraperSendingByteByByteForeverIsCutOff) {
  harness::Sluiced sluiced(harness::metrics_config());
  const std::string address = harness::metrics_socket(sluiced);
  expect_clients_served_during(sluiced, [&] {
    RawScraper slow(address);
    const std::string header = "GET /metrics HTTP/1.1\r\nX-Slow: " + std::string(4000, 's');
    const auto started = std::chrono::steady_clock::now();
    bool closed = false;
    std::string answer;
    for (std::size_t i = 0; i < header.size() && !closed; ++i) {
      if (!slow.send(header.substr(i, 1))) break;
      answer += slow.read_until_closed(5ms, closed);
      // Meanwhile a well-behaved scrape is answered.
      if (i == 20) {
        EXPECT_EQ(harness::http_get(address).status, 200);
      }
    }
    if (!closed) answer += slow.read_until_closed(10s, closed);
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_TRUE(closed) << "the slow scraper was never cut off";
    EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 408");
    EXPECT_LT(took, 8s);
  });
}

TEST(MetricsEndpoint, ACrowdOfScrapersIsBoundedAndNonReadersAreLetGo) {
  harness::Sluiced sluiced(harness::metrics_config());
  const std::string address = harness::metrics_socket(sluiced);
  expect_clients_served_during(sluiced, [&] {
    // 64 connections at once that send nothing: 16 are held (until their request timeout), the
    // rest are told 503 at once.
    std::vector<std::unique_ptr<RawScraper>> crowd;
    for (int i = 0; i < 64; ++i) crowd.push_back(std::make_unique<RawScraper>(address));
    int refused = 0;
    for (const auto& scraper : crowd) {
      bool closed = false;
      const std::string answer = scraper->read_until_closed(100ms, closed);
      if (answer.rfind("HTTP/1.1 503", 0) == 0 && closed) ++refused;
    }
    EXPECT_EQ(refused, 64 - 16);
    crowd.clear();
    // Scrapers that ask and never read: each answer is handed to the kernel and the connection
    // closed, so they hold nothing; a scrape is served again once the crowd is gone.
    for (int i = 0; i < 32; ++i) {
      crowd.push_back(std::make_unique<RawScraper>(address));
      crowd.back()->send("GET /metrics HTTP/1.1\r\n\r\n");
    }
    EXPECT_TRUE(harness::wait_until([&] { return harness::http_get(address).status == 200; }, 5s));
  });
}

}  // namespace
