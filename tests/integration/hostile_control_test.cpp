// Hostile input on the control socket (issue 6 §5), beyond what control_commands_test.cpp covers
// (binary lines, deep nesting, a megabyte line, wrong types at the top level): out-of-range and
// oddly typed arguments, peers that vanish halfway through a huge request, a peer that pipelines
// requests and never reads the answers, and hundreds of idle control connections.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

namespace {

using harness::PgConn;
using nlohmann::json;
using namespace std::chrono_literals;

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

// A raw, non-blocking connection to the control socket; -1 when the connect failed.
int connect_nonblocking(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Closes with a reset rather than a FIN: the peer vanishes.
void abort_connection(int fd) {
  const linger reset{.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  close(fd);
}

class HostileControlTest : public ::testing::Test {
 protected:
  // Running, not draining, answers SQL, and no backend is left busy or inside a transaction.
  void expect_healthy() {
    ASSERT_TRUE(daemon.alive()) << "sluiced died";
    const json answer = ctltest::status(daemon.control_socket());
    EXPECT_EQ(answer.value("state", ""), "running") << answer.dump();
    if (answer.contains("drain")) {
      EXPECT_FALSE(answer["drain"].value("started", false)) << answer.dump();
    }
    const PgConn client = harness::connect(daemon.conninfo());
    EXPECT_EQ(harness::scalar(client, "SELECT 'still ok'"), "still ok");
    const PgConn observer = harness::connect(harness::postgres().conninfo());
    EXPECT_TRUE(harness::wait_until(
        [&] {
          return harness::scalar(
                     observer,
                     "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                     "AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'") == "0";
        },
        5s))
        << "a backend is left busy or inside a transaction";
  }

  harness::Sluiced daemon{{.pool_size = 1}};
};

TEST_F(HostileControlTest, OutOfRangeAndOddlyTypedArgumentsAreErrors) {
  std::string nested_argument = R"({"cmd": "drain", "timeout_s": )";
  for (int i = 0; i < 60; ++i) nested_argument += '[';  // within the nesting limit: a type error
  for (int i = 0; i < 60; ++i) nested_argument += ']';
  nested_argument += '}';
  const std::vector<std::string> lines = {
      R"({"cmd": "drain", "timeout_s": 1e400})",
      R"({"cmd": "drain", "timeout_s": 1e300})",
      R"({"cmd": "drain", "timeout_s": 9223372036854775807})",
      R"({"cmd": "drain", "timeout_s": 18446744073709551616})",
      R"({"cmd": "drain", "timeout_s": -0.000001})",
      R"({"cmd": "drain", "timeout_s": NaN})",
      R"({"cmd": "drain", "timeout_s": true})",
      R"({"cmd": "drain", "timeout_s": {"s": 1}})",
      nested_argument,
      R"({"cmd": "status\u0000"})",
      R"({"cmd": "\ud800"})",
      R"({"cmd": ")" + std::string(60000, 'A') + R"("})",  // under control_request_max, echoed back?
      R"({"cmd": null})",
      R"({})",
      R"(null)",
      R"("status")",
      R"(1)",
      "\xef\xbb\xbf{\"cmd\": \"frobnicate\"}",  // a BOM, then an unknown command
  };
  ctltest::ControlConnection connection(daemon.control_socket());
  for (const std::string& line : lines) {
    SCOPED_TRACE(line.substr(0, 80));
    ASSERT_TRUE(connection.send_raw(line + "\n")) << "the daemon closed the connection";
    const auto answer_line = connection.read_line();
    ASSERT_TRUE(answer_line) << "no answer";
    EXPECT_LE(answer_line->size(), std::size_t{4096}) << "the error echoes too much of the request";
    const json answer = json::parse(*answer_line, nullptr, false);
    EXPECT_TRUE(answer.is_object() && answer.contains("error")) << answer_line->substr(0, 200);
  }
  expect_healthy();
}

TEST_F(HostileControlTest, PeersVanishingMidRequest) {
  std::mt19937 random(7);
  std::string binary(std::size_t{1} << 20, '\0');
  for (char& byte : binary) byte = static_cast<char>(random() & 0xff);
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_nonblocking(daemon.control_socket());
    ASSERT_GE(fd, 0);
    // As much of a megabyte (no newline promised) as the socket takes, then a reset.
    std::size_t sent = 0;
    while (sent < binary.size()) {
      const ssize_t n = ::send(fd, binary.data() + sent, binary.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    if (i % 2 == 0)
      abort_connection(fd);
    else
      close(fd);
  }
  // Half a request, then gone.
  const int fd = connect_nonblocking(daemon.control_socket());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, R"({"cmd": "dra)", 12, MSG_NOSIGNAL), 12);
  abort_connection(fd);
  expect_healthy();
}

TEST_F(HostileControlTest, PipeliningPeerThatNeverReadsIsHeldBack) {
  const long rss_before = rss_kib(daemon.pid());
  const int fd = connect_nonblocking(daemon.control_socket());
  ASSERT_GE(fd, 0);
  // Requests without reading a single answer, until the kernel will take no more for a while.
  std::string burst;
  for (int i = 0; i < 1000; ++i) burst += "{\"cmd\": \"status\"}\n";
  std::size_t total = 0;
  auto idle_since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - idle_since < 500ms && total < (std::size_t{256} << 20)) {
    const ssize_t n = ::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL);
    if (n > 0) {
      total += static_cast<std::size_t>(n);
      idle_since = std::chrono::steady_clock::now();
    } else if (n < 0 && errno == EAGAIN) {
      pollfd writable{.fd = fd, .events = POLLOUT, .revents = 0};
      poll(&writable, 1, 100);
    } else {
      break;  // closed by the daemon: also acceptable
    }
  }
  const long rss_after = rss_kib(daemon.pid());
  // The daemon stops reading once its answers back up (64 KiB), so neither side grows without end.
  EXPECT_LT(total, std::size_t{64} << 20) << "the daemon kept reading requests nobody reads answers to";
  EXPECT_LT(rss_after - rss_before, 64L * 1024)
      << "RSS grew from " << rss_before << " to " << rss_after << " KiB; " << total << " bytes sent";
  std::cerr << "[ info ] a non-reading control peer got " << total << " bytes in; RSS " << rss_before
            << " -> " << rss_after << " KiB\n";
  // Others are still served meanwhile.
  expect_healthy();
  abort_connection(fd);
  expect_healthy();
}

// The control server holds at most 64 connections (ControlServer::Settings::max_connections);
// past that a peer is told so and closed, and the daemon is otherwise unaffected.
TEST_F(HostileControlTest, HundredsOfIdleControlConnections) {
  constexpr std::size_t kLimit = 64;
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) {
    const int fd = connect_nonblocking(daemon.control_socket());
    ASSERT_GE(fd, 0) << "connect " << i;
    fds.push_back(fd);
  }
  std::size_t refused = 0;
  for (const int fd : fds) {
    pollfd readable{.fd = fd, .events = POLLIN, .revents = 0};
    if (poll(&readable, 1, 50) <= 0) continue;  // admitted, and idle
    char reply[512] = {};
    const ssize_t n = recv(fd, reply, sizeof reply - 1, 0);
    if (n > 0 && std::string(reply).find("too many control connections") != std::string::npos) ++refused;
  }
  EXPECT_EQ(refused, fds.size() - kLimit);
  for (const int fd : fds) close(fd);
  // Once they are gone, the control socket answers again.
  EXPECT_TRUE(harness::wait_until([&] {
    try {
      return ctltest::status(daemon.control_socket()).value("state", "") == "running";
    } catch (const std::exception&) {
      return false;
    }
  }));
  expect_healthy();
}

}  // namespace
