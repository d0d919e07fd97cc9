// Live upgrade (issue 18), the new process's side against an old process it cannot trust: the test
// plays the old sluiced (upgradetest::FakePredecessor) and hands over what a real one never would.
// Whatever arrives, the new process refuses what it cannot serve and goes on serving the rest.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/upgrade_helpers.h"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

int clients_total(harness::Sluiced& daemon) {
  return ctltest::status(daemon.control_socket()).at("clients").at("total").get<int>();
}

// Reads from `fd` until a ReadyForQuery ('Z') has arrived or `timeout` passes; what was read.
std::string read_until_ready(int fd, std::chrono::milliseconds timeout) {
  std::string received;
  harness::wait_until(
      [&] {
        pollfd readable{.fd = fd, .events = POLLIN, .revents = 0};
        if (::poll(&readable, 1, 10) == 1) {
          char chunk[4096];
          const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
          if (n > 0) received.append(chunk, static_cast<std::size_t>(n));
          if (n == 0) return true;
        }
        return received.find("Z\0\0\0\5I", 0, 6) != std::string::npos;
      },
      timeout);
  return received;
}

// A descriptor that is not a connected stream socket (a device, a pipe, a datagram socket, a
// listening socket) is refused as a client's: closed, logged, declined (the old process would drain
// the client), and the new process serves on. A proper one then moves in, adopted, and is served.
TEST(UpgradeAdoption, ADescriptorThatIsNotAStreamSocketIsRefused) {
  upgradetest::FakePredecessor old(harness::default_config());
  harness::Sluiced& successor = old.successor();
  const json client = {
      {"type", "client"}, {"fds", 1}, {"client", upgradetest::moved_client_state("postgres", "postgres")}};

  const int device = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int pipe_ends[2];
  ASSERT_EQ(::pipe2(pipe_ends, O_CLOEXEC), 0);
  const int datagram = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int listening = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sa_family_t family = AF_UNIX;  // a bare family: the kernel binds an abstract address
  ASSERT_EQ(::bind(listening, reinterpret_cast<const sockaddr*>(&family), sizeof family), 0);
  ASSERT_EQ(::listen(listening, 1), 0);
  std::uint64_t move = 0;
  for (const int hostile : {device, pipe_ends[0], datagram, listening}) {
    json numbered = client;
    numbered["move"] = ++move;
    old.send(numbered, {hostile});
    ::close(hostile);
  }
  ::close(pipe_ends[1]);
  ASSERT_TRUE(harness::wait_until([&] {
    const std::string log = successor.log();
    std::size_t refused = 0;
    for (auto at = log.find("not a connected stream socket"); at != std::string::npos;
         at = log.find("not a connected stream socket", at + 1))
      ++refused;
    return refused == 4 || !successor.alive();
  })) << successor.log();
  ASSERT_TRUE(successor.alive()) << successor.log();
  EXPECT_EQ(clients_total(successor), 0);
  // Each declined: a real old process would drain the client it still holds.
  for (std::uint64_t declined = 1; declined <= move; ++declined) {
    const auto answer = old.receive(10s);
    ASSERT_TRUE(answer.has_value()) << successor.log();
    EXPECT_EQ(*answer, json({{"type", "moved"}, {"move", declined}, {"adopted", false}}));
  }

  int ends[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  json proper = client;
  proper["move"] = ++move;
  old.send(proper, {ends[1]});
  ::close(ends[1]);
  const auto answer = old.receive(10s);
  ASSERT_TRUE(answer.has_value()) << successor.log();
  EXPECT_EQ(*answer, json({{"type", "moved"}, {"move", move}, {"adopted", true}}));
  EXPECT_EQ(clients_total(successor), 1);
  const std::string query("Q\0\0\0\15SELECT 1\0", 14);
  ASSERT_EQ(::send(ends[0], query.data(), query.size(), MSG_NOSIGNAL), static_cast<ssize_t>(query.size()));
  const std::string reply = read_until_ready(ends[0], 10s);
  EXPECT_NE(reply.find("SELECT 1"), std::string::npos)
      << "no CommandComplete in " << reply.size() << " bytes";
  ::close(ends[0]);
}

}  // namespace
