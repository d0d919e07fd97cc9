// Handover messages with descriptors attached (daemon/upgrade/descriptor_passing.h), over a real
// socket pair: what the old sluiced sends is what the new one receives.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "daemon/upgrade/descriptor_passing.h"

namespace sluice::daemon::upgrade {
namespace {

using namespace std::chrono_literals;

struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0); }
  ~SocketPair() {
    for (const int fd : ends) {
      if (fd >= 0) ::close(fd);
    }
  }
  int ends[2] = {-1, -1};
};

auto soon() { return std::chrono::steady_clock::now() + 2s; }

TEST(UpgradeDescriptorPassing, DescriptorsArriveWithTheirMessageAndWork) {
  SocketPair channel;
  int pipe_ends[2];
  ASSERT_EQ(::pipe2(pipe_ends, O_CLOEXEC), 0);
  const int sent[] = {pipe_ends[1]};
  ASSERT_TRUE(send_message(channel.ends[0], {{"type", "listeners"}, {"names", {"unix:/x"}}}, sent).ok());
  ::close(pipe_ends[1]);  // the receiver's copy keeps the pipe open

  MessageReader reader;
  auto received = receive_message(channel.ends[1], reader, soon());
  ASSERT_TRUE(received.ok()) << received.error();
  EXPECT_EQ(received->message["type"], "listeners");
  ASSERT_EQ(received->descriptors.size(), 1U);
  const int copy = received->descriptors[0];
  EXPECT_NE(::fcntl(copy, F_GETFD) & FD_CLOEXEC, 0)
      << "a received descriptor must not leak into exec'd children";
  ASSERT_EQ(::write(copy, "ok", 2), 2);
  ::close(copy);
  char buffer[2];
  EXPECT_EQ(::read(pipe_ends[0], buffer, sizeof buffer), 2);
  ::close(pipe_ends[0]);
}

TEST(UpgradeDescriptorPassing, SilenceAndAClosedPeerAreErrors) {
  SocketPair channel;
  MessageReader reader;
  const auto started = std::chrono::steady_clock::now();
  auto silent = receive_message(channel.ends[1], reader, started + 100ms);
  ASSERT_FALSE(silent.ok());
  EXPECT_EQ(silent.error(), "handover channel: no message in time");
  EXPECT_GE(std::chrono::steady_clock::now() - started, 100ms);

  ::close(channel.ends[0]);
  channel.ends[0] = -1;
  auto closed = receive_message(channel.ends[1], reader, soon());
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.error(), "handover channel: the old process closed it");
}

TEST(UpgradeDescriptorPassing, TooManyDescriptorsAreRefusedBeforeSending) {
  SocketPair channel;
  std::vector<int> many(kMaxDescriptors + 1, channel.ends[0]);
  auto sent = send_message(channel.ends[0], {{"type", "listeners"}}, many);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error(), "too many descriptors for one handover message");
}

}  // namespace
}  // namespace sluice::daemon::upgrade
