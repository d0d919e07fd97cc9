// Floods on the client socket (issue 6 §1, §5): random bytes on hundreds of connections, before and
// after login, and 2000 connections that never say a word. sluiced stays alive, answers a real
// client at once, keeps an idle connection to a few KiB, and leaves no server connection dirty.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace harness {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A connected Unix socket, closed on destruction; -1 if the connect failed.
class Socket {
 public:
  explicit Socket(const std::string& path) : fd_(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&&) = delete;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  [[nodiscard]] int fd() const { return fd_; }

  // Best effort: the daemon may close halfway through garbage.
  void send(const std::string& bytes) const {
    std::size_t sent = 0;
    while (fd_ >= 0 && sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
  }

  // Reads whatever arrives until `marker` has been seen, EOF, or `timeout`; returns it all.
  std::string read_until(const std::string& marker, milliseconds timeout) const {
    std::string received;
    const auto deadline = Clock::now() + timeout;
    while (fd_ >= 0 && received.find(marker) == std::string::npos) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left <= milliseconds::zero()) break;
      pollfd readable{.fd = fd_, .events = POLLIN, .revents = 0};
      if (poll(&readable, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      received.append(chunk, static_cast<std::size_t>(n));
    }
    return received;
  }

 private:
  int fd_;
};

void expect_healthy(Sluiced& sluiced) {
  ASSERT_TRUE(sluiced.alive()) << "sluiced died";
  const PgConn conn = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(conn, "SELECT now() = statement_timestamp()"), "t")
      << "the pooled server was inside a transaction";
  std::string dirty;
  EXPECT_TRUE(wait_until([&] { return (dirty = dirty_backends()).empty(); }, seconds(5)))
      << "backends left dirty:\n"
      << dirty;
}

// A line of /proc/<pid>/status or /proc/<pid>/limits, by its prefix; "" if absent.
std::string proc_line(pid_t pid, const std::string& file, const std::string& prefix) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(prefix)) return line;
  }
  return "";
}

long rss_kib(pid_t pid) {
  const std::string line = proc_line(pid, "status", "VmRSS:");  // "VmRSS:   12345 kB"
  return line.empty() ? -1 : std::stol(line.substr(6));
}

long open_fds(pid_t pid) {
  long count = 0;
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++count;
  }
  return count;
}

// ---- random bytes ----

TEST(HostileFloodTest, RandomBytesOn300Connections) {
  Sluiced sluiced({.pool_size = 2});
  std::mt19937 random(20240601);  // seeded: a failure replays
  const std::string frontend_types = "BCDEFHPQSdcfpX";
  auto garbage = [&](bool framed) {
    std::string bytes;
    if (framed) {  // a plausible header, so it reaches the message path (and maybe the server)
      bytes += frontend_types[random() % frontend_types.size()];
      bytes += be32(4 + random() % 64);
    }
    const std::size_t size = 1 + random() % 512;
    for (std::size_t i = 0; i < size; ++i) bytes += static_cast<char>(random() & 0xff);
    return bytes;
  };

  constexpr int kRounds = 6;
  constexpr int kPerRound = 50;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<Socket> sockets;
    std::vector<int> kinds;
    for (int i = 0; i < kPerRound; ++i) {
      sockets.emplace_back(sluiced.socket_path());
      ASSERT_GE(sockets.back().fd(), 0) << "connect failed in round " << round;
      kinds.push_back(static_cast<int>(random() % 3));
    }
    // 0: garbage instead of a startup packet; 1: after an SSLRequest; 2: after a good login.
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      if (kinds[i] == 0) sockets[i].send(garbage(false));
      if (kinds[i] == 1) sockets[i].send(be32(8) + be32(80877103));
      if (kinds[i] == 2) sockets[i].send(startup_packet());
    }
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      if (kinds[i] == 1 && sockets[i].read_until("N", seconds(5)) == "N") sockets[i].send(garbage(false));
      if (kinds[i] == 2 && sockets[i].read_until(std::string("Z\0\0\0\5I", 6), seconds(5)).size() > 0) {
        sockets[i].send(garbage(random() % 2 == 0));
      }
    }
    // Half of them wait for sluiced's verdict, the others just go.
    for (std::size_t i = 0; i < sockets.size(); i += 2) sockets[i].read_until("\x01never", milliseconds(50));
    ASSERT_TRUE(sluiced.alive()) << "sluiced died in round " << round;
  }
  expect_healthy(sluiced);
}

// ---- silent connections ----

TEST(HostileFloodTest, TwoThousandSilentConnections) {
  constexpr int kSilent = 2000;
  constexpr long kPerConnectionKiB = 4;
  // Each connection costs a descriptor here and one in sluiced, which inherits this limit.
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  if (files.rlim_cur < kSilent + 500) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, kSilent + 1000);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &files), 0) << std::strerror(errno);
  }
  if (files.rlim_cur < kSilent + 500)
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << files.rlim_max << " is too low";

  Sluiced sluiced(
      {.pool_size = 1,
       .overrides = {{"limits", {{"max_client_conn", kSilent + 100}, {"login_timeout_ms", 120000}}}}});
  const std::string limit = proc_line(sluiced.pid(), "limits", "Max open files");
  ASSERT_FALSE(limit.empty());
  EXPECT_GE(std::stol(limit.substr(std::string("Max open files").size())), kSilent + 100) << limit;

  // Warm up (a server, the pool's parameters), so that only the silent connections grow the RSS.
  {
    const PgConn conn = connect(sluiced.conninfo());
    EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
  }
  // The warm-up client's descriptor goes once sluiced has seen it leave: wait for a steady count.
  long fds_before = open_fds(sluiced.pid());
  for (long previous = -1; fds_before != previous;) {
    std::this_thread::sleep_for(milliseconds(100));
    previous = std::exchange(fds_before, open_fds(sluiced.pid()));
  }
  const long rss_before = rss_kib(sluiced.pid());
  ASSERT_GT(rss_before, 0);

  std::vector<Socket> silent;
  silent.reserve(kSilent);
  for (int i = 0; i < kSilent; ++i) {
    silent.emplace_back(sluiced.socket_path());
    ASSERT_GE(silent.back().fd(), 0) << "connect " << i << ": " << std::strerror(errno);
  }
  EXPECT_TRUE(wait_until([&] { return open_fds(sluiced.pid()) >= fds_before + kSilent; }, seconds(10)))
      << "sluiced holds " << open_fds(sluiced.pid()) - fds_before << " of " << kSilent << " connections";

  // A real client is served at once.
  const auto start = Clock::now();
  {
    const PgConn conn = connect(sluiced.conninfo());
    EXPECT_EQ(scalar(conn, "SELECT 'served'"), "served");
  }
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  EXPECT_LT(took, seconds(5)) << "a real client took " << took.count() << " ms among " << kSilent
                              << " silent ones";

  const long rss_after = rss_kib(sluiced.pid());
  EXPECT_LE(rss_after - rss_before, kSilent * kPerConnectionKiB)
      << "RSS grew from " << rss_before << " KiB to " << rss_after << " KiB for " << kSilent
      << " silent connections (" << (rss_after - rss_before) * 1024 / kSilent << " bytes each)";
  std::cerr << "[ info ] " << kSilent << " silent connections: RSS " << rss_before << " -> " << rss_after
            << " KiB; real client served in " << took.count() << " ms\n";

  silent.clear();
  EXPECT_TRUE(wait_until([&] { return open_fds(sluiced.pid()) <= fds_before; }, seconds(10)))
      << "sluiced still holds " << open_fds(sluiced.pid()) - fds_before
      << " descriptors after the clients left";
  expect_healthy(sluiced);
}

// ---- out of descriptors ----

// The test process's soft descriptor limit, set for a scope: sluiced inherits it.
class SoftFileLimit {
 public:
  explicit SoftFileLimit(rlim_t soft) {
    EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0);
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0) << std::strerror(errno);
  }
  ~SoftFileLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  SoftFileLimit(const SoftFileLimit&) = delete;
  SoftFileLimit& operator=(const SoftFileLimit&) = delete;

  [[nodiscard]] rlim_t hard() const { return saved_.rlim_max; }

 private:
  rlimit saved_{};
};

// "Max open files            1024                 4096                 files": {soft, hard}.
std::pair<long, long> file_limits(pid_t pid) {
  std::istringstream line(
      proc_line(pid, "limits", "Max open files").substr(std::string("Max open files").size()));
  long soft = -1;
  long hard = -1;
  line >> soft >> hard;
  return {soft, hard};
}

TEST(HostileFloodTest, SluicedRaisesItsDescriptorLimitToTheHardLimit) {
  constexpr rlim_t kLow = 256;
  const SoftFileLimit low(kLow);
  if (low.hard() <= kLow)
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << low.hard() << " leaves nothing to raise";
  Sluiced sluiced;
  const auto [soft, hard] = file_limits(sluiced.pid());
  EXPECT_EQ(hard, static_cast<long>(low.hard()));
  EXPECT_EQ(soft, hard) << "sluiced kept the soft limit it was started with (" << kLow << ")";
  EXPECT_NE(sluiced.log().find("file descriptor limit: " + std::to_string(hard)), std::string::npos)
      << sluiced.log();

  // Lowered behind its back, the soft limit is raised again by a reload.
  const rlimit lowered{.rlim_cur = kLow, .rlim_max = static_cast<rlim_t>(hard)};
  ASSERT_EQ(prlimit(sluiced.pid(), RLIMIT_NOFILE, &lowered, nullptr), 0) << std::strerror(errno);
  ASSERT_EQ(file_limits(sluiced.pid()).first, static_cast<long>(kLow));
  ASSERT_EQ(::kill(sluiced.pid(), SIGHUP), 0);
  EXPECT_TRUE(wait_until([&] { return file_limits(sluiced.pid()).first == hard; }, seconds(5)))
      << "soft limit after the reload: " << file_limits(sluiced.pid()).first;
}

// Out of descriptors, new clients wait in the listen backlog (as with PostgreSQL and PgBouncer),
// and sluiced says so once, not at each of its retries; once descriptors free up, they are served.
TEST(HostileFloodTest, OutOfDescriptorsNewClientsWaitAndOneWarningSaysSo) {
  constexpr int kSilent = 8;
  constexpr std::string_view kWarning = "new clients wait in the listen backlog";
  Sluiced sluiced({.pool_size = 1});
  {  // its server, opened now: the waiting client needs no descriptor but its own
    const PgConn conn = connect(sluiced.conninfo());
    EXPECT_EQ(scalar(conn, "SELECT 1"), "1");
  }
  long fds = open_fds(sluiced.pid());
  for (long previous = -1; fds != previous;) {  // the warm-up client's descriptor goes
    std::this_thread::sleep_for(milliseconds(50));
    previous = std::exchange(fds, open_fds(sluiced.pid()));
  }
  const rlimit tight{.rlim_cur = static_cast<rlim_t>(fds + 2), .rlim_max = static_cast<rlim_t>(fds + 2)};
  ASSERT_EQ(prlimit(sluiced.pid(), RLIMIT_NOFILE, &tight, nullptr), 0) << std::strerror(errno);

  std::vector<Socket> silent;
  for (int i = 0; i < kSilent; ++i) silent.emplace_back(sluiced.socket_path());
  ASSERT_TRUE(wait_until([&] { return sluiced.log().find(kWarning) != std::string::npos; }, seconds(5)))
      << sluiced.log();
  std::string served;
  std::thread client([&] {
    const PgConn conn = try_connect(sluiced.conninfo());
    served =
        PQstatus(conn.get()) == CONNECTION_OK ? scalar(conn, "SELECT 'served'") : PQerrorMessage(conn.get());
  });
  // Nothing shows the retries but the log, which must stay quiet: let a few of them (every 100 ms) pass.
  std::this_thread::sleep_for(milliseconds(450));
  silent.clear();
  client.join();
  EXPECT_EQ(served, "served");
  const std::string log = sluiced.log();
  std::size_t warnings = 0;
  for (std::size_t at = log.find(kWarning); at != std::string::npos; at = log.find(kWarning, at + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1U) << log;
  EXPECT_NE(log.find("again, after"), std::string::npos) << log;
  ASSERT_TRUE(sluiced.alive());
}

}  // namespace
}  // namespace harness
