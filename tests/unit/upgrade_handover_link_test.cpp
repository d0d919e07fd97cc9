// The handover channel on a loop (daemon/upgrade/handover_link.h): many messages, some carrying
// descriptors, arrive in order each with its own descriptors, however the kernel cuts the stream.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "daemon/upgrade/handover_link.h"

namespace sluice::daemon::upgrade {
namespace {

struct Loop {
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_NOWAIT);  // close callbacks
    uv_loop_close(&loop);
  }
  // Runs until `done` or 2000 turns.
  template <class Done>
  void run_until(Done done) {
    for (int turn = 0; turn < 2000 && !done(); ++turn) uv_run(&loop, UV_RUN_ONCE);
  }
  uv_loop_t loop{};
};

struct Pair {
  Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ends), 0); }
  int ends[2] = {-1, -1};
};

TEST(UpgradeHandoverLink, EachMessageGetsItsOwnDescriptorsInOrder) {
  Loop loop;
  Pair pair;
  constexpr int kMessages = 300;  // with a large body each, more than the socket buffer holds
  std::vector<std::pair<int, int>> pipes;
  std::vector<std::pair<int, int>> received;  // message number, descriptor
  bool closed = false;
  HandoverLink sender(
      &loop.loop, pair.ends[0], [](const nlohmann::json&, std::vector<int>&) {},
      [&](const std::string&, bool) { closed = true; });
  HandoverLink receiver(
      &loop.loop, pair.ends[1],
      [&](const nlohmann::json& message, std::vector<int>& descriptors) {
        const int number = message.at("n").get<int>();
        if (number % 3 == 0) {
          EXPECT_TRUE(descriptors.empty()) << number;
          return;
        }
        EXPECT_EQ(descriptors.size(), 1U) << number;
        if (descriptors.size() != 1) return;
        received.emplace_back(number, std::exchange(descriptors[0], -1));
      },
      [&](const std::string& reason, bool) { ADD_FAILURE() << "receiver closed: " << reason; });
  const std::string body(20000, 'x');
  for (int number = 0; number < kMessages; ++number) {
    if (number % 3 == 0) {
      ASSERT_TRUE(sender.send({{"type", "note"}, {"n", number}, {"body", body}}));
      continue;
    }
    int ends[2];
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    pipes.emplace_back(ends[0], number);
    ASSERT_TRUE(sender.send({{"type", "client"}, {"n", number}, {"fds", 1}, {"body", body}}, {ends[1]}));
  }
  EXPECT_FALSE(sender.flushed());
  loop.run_until([&] { return received.size() == pipes.size(); });
  ASSERT_EQ(received.size(), pipes.size());
  EXPECT_TRUE(sender.flushed());
  // The descriptor that came with message n is the write end of the pipe sent with n.
  for (std::size_t i = 0; i < received.size(); ++i) {
    const auto [number, fd] = received[i];
    EXPECT_EQ(number, pipes[i].second);
    const char byte = static_cast<char>(number);
    EXPECT_EQ(::write(fd, &byte, 1), 1);
    ::close(fd);
    char read_back = 0;
    EXPECT_EQ(::read(pipes[i].first, &read_back, 1), 1);
    EXPECT_EQ(read_back, byte) << "message " << number;
    ::close(pipes[i].first);
  }
  EXPECT_FALSE(closed);
}

TEST(UpgradeHandoverLink, AMessageWithoutTheDescriptorsItDeclaresBreaksTheChannel) {
  Loop loop;
  Pair pair;
  const std::string frame = encode_message({{"type", "client"}, {"fds", 1}});
  ASSERT_EQ(::write(pair.ends[0], frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  int messages = 0;
  std::optional<std::pair<std::string, bool>> closed;
  HandoverLink receiver(
      &loop.loop, pair.ends[1], [&](const nlohmann::json&, std::vector<int>&) { ++messages; },
      [&](const std::string& reason, bool broken) { closed.emplace(reason, broken); });
  loop.run_until([&] { return closed.has_value(); });
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->first, "a handover message came without the descriptors it declares");
  EXPECT_TRUE(closed->second);
  EXPECT_EQ(messages, 0);
  ::close(pair.ends[0]);
}

// An error the kernel gives for one message's descriptors (here EBADF: a descriptor that is not
// open; in production ETOOMANYREFS, more in flight than RLIMIT_NOFILE) is that message's: it alone
// is dropped and its sender told, the channel and the messages after it go on.
TEST(UpgradeHandoverLink, AMessageTheKernelRefusesForItsDescriptorsAloneIsDropped) {
  Loop loop;
  Pair pair;
  std::vector<int> numbers;
  std::vector<std::uint64_t> undelivered;
  bool closed = false;
  HandoverLink sender(
      &loop.loop, pair.ends[0], [](const nlohmann::json&, std::vector<int>&) {},
      [&](const std::string&, bool) { closed = true; });
  sender.on_undelivered([&](std::uint64_t tag) { undelivered.push_back(tag); });
  HandoverLink receiver(
      &loop.loop, pair.ends[1],
      [&](const nlohmann::json& message, std::vector<int>&) {
        numbers.push_back(message.at("n").get<int>());
      },
      [&](const std::string& reason, bool) { ADD_FAILURE() << "receiver closed: " << reason; });
  const int not_open = ::dup(0);
  ASSERT_GE(not_open, 0);
  ::close(not_open);
  EXPECT_TRUE(sender.send({{"type", "client"}, {"n", 1}, {"fds", 1}}, {not_open}, 41));
  EXPECT_TRUE(sender.send({{"type", "note"}, {"n", 2}}));
  loop.run_until([&] { return numbers.size() == 1; });
  EXPECT_EQ(numbers, std::vector<int>{2});
  EXPECT_EQ(undelivered, std::vector<std::uint64_t>{41});
  EXPECT_TRUE(sender.open());
  EXPECT_FALSE(closed);
}

// A dead peer is the channel's end: closed, and nothing is taken for one message's fault.
TEST(UpgradeHandoverLink, ADeadPeerClosesTheChannel) {
  Loop loop;
  Pair pair;
  std::optional<std::string> closed;
  bool undelivered = false;
  HandoverLink sender(
      &loop.loop, pair.ends[0], [](const nlohmann::json&, std::vector<int>&) {},
      [&](const std::string& reason, bool) { closed = reason; });
  sender.on_undelivered([&](std::uint64_t) { undelivered = true; });
  ::close(pair.ends[1]);
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  ::close(ends[0]);
  EXPECT_FALSE(sender.send({{"type", "client"}, {"fds", 1}}, {ends[1]}, 7));
  loop.run_until([&] { return closed.has_value(); });
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(*closed, "write failed: Broken pipe");
  EXPECT_FALSE(undelivered);
}

}  // namespace
}  // namespace sluice::daemon::upgrade
