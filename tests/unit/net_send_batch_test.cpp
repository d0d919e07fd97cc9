// Batched sends (net/send_batch.h): what batched sockets write while a loop turn has events
// left to serve leaves once it has served them, each socket's bytes in the order written; the last
// event's writes leave at once; what the kernel does not take waits for
// the socket to be writable; a peer gone is a socket error; a socket closed with bytes queued
// sends them first; a full batch and a large write do not wait; where the kernel refuses
// io_uring, at once or later, the sends go one by one.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "net/poll_socket.h"
#include "net/socket_reactor.h"

namespace sluice::net {
namespace {

struct Recorder final : PollSocket::Handler {
  void on_readable() override {}
  void on_drained() override { ++drained; }
  void on_backed_up() override { ++backed_up; }
  void on_socket_error(int uv_status) override {
    error = uv_status;
    if (then) then();
  }
  int drained = 0;
  int backed_up = 0;
  int error = 0;
  std::function<void()> then;  // after an error
};

// A batched socket on fds[0] (which it owns) and the peer's end, fds[1].
struct Batched {
  explicit Batched(uv_loop_t* loop) {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    socket = PollSocket::open(loop, fds[0], /*owns_fd=*/true, &recorder);
    socket->batch_sends();
  }
  ~Batched() { close(fds[1]); }
  // What the peer can read now, without waiting.
  [[nodiscard]] std::string received() const {
    std::string all;
    char buffer[65536];
    for (ssize_t n; (n = recv(fds[1], buffer, sizeof buffer, 0)) > 0;)
      all.append(buffer, static_cast<std::size_t>(n));
    return all;
  }
  void write(const std::string& bytes) { EXPECT_TRUE(socket->write(bytes)); }
  int fds[2] = {-1, -1};
  Recorder recorder;
  PollSocket::Ptr socket;
};

// A watcher made readable at once; whichever of a turn's triggers is served first runs the work.
struct Trigger final : SocketReactor::Watcher {
  Trigger(SocketReactor& reactor, std::shared_ptr<std::function<void()>> work)
      : reactor_(reactor), work_(std::move(work)) {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds_), 0);
    EXPECT_TRUE(reactor_.add(fds_[0], EPOLLIN, this));
    EXPECT_EQ(::write(fds_[1], "x", 1), 1);
  }
  ~Trigger() override {
    close(fds_[0]);
    close(fds_[1]);
  }
  void on_events(std::uint32_t) override {
    if (*work_) std::exchange(*work_, nullptr)();
    reactor_.release(this, fds_[0]);
  }
  SocketReactor& reactor_;
  std::shared_ptr<std::function<void()>> work_;
  int fds_[2] = {-1, -1};
};

class SendBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    reactor_ = std::make_unique<SocketReactor>(&loop_);
  }
  void TearDown() override {
    sockets_.clear();
    reactor_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  Batched& socket() { return *sockets_.emplace_back(std::make_unique<Batched>(&loop_)); }
  // Runs `work` as the first of `events` socket events of one turn, then lets the turn end.
  void in_a_turn(std::function<void()> work, int events = 2) {
    auto shared = std::make_shared<std::function<void()>>(std::move(work));
    for (int i = 0; i < events; ++i) new Trigger(*reactor_, shared);  // released, and freed, by the reactor
    reactor_->turn(1000);
    EXPECT_FALSE(*shared) << "the turn did not serve the events";
  }

  uv_loop_t loop_{};
  std::unique_ptr<SocketReactor> reactor_;
  std::vector<std::unique_ptr<Batched>> sockets_;
};

TEST_F(SendBatchTest, WritesOfATurnLeaveAtItsEndEachSocketsInOrder) {
  Batched& a = socket();
  Batched& b = socket();
  Batched& c = socket();
  in_a_turn([&] {
    a.write("a1");
    b.write("b1");
    a.write("a2");  // behind b's: a's bytes stay together, in order
    c.write("c1");
    a.write("a3");
    a.write("a4");
    EXPECT_EQ(a.received(), "") << "a batched write left before the turn's end";
    EXPECT_TRUE(a.socket->has_pending_output());
    EXPECT_FALSE(a.socket->backed_up());
  });
  EXPECT_EQ(a.received(), "a1a2a3a4");
  EXPECT_EQ(b.received(), "b1");
  EXPECT_EQ(c.received(), "c1");
  for (Batched* s : {&a, &b, &c}) {
    EXPECT_FALSE(s->socket->has_pending_output());
    EXPECT_EQ(s->recorder.drained, 1);
    EXPECT_EQ(s->recorder.error, 0);
  }
}

// A lone client's reply leaves at once: no other send of the turn could join it.
TEST_F(SendBatchTest, ATurnsLastEventSendsAtOnce) {
  Batched& a = socket();
  in_a_turn(
      [&] {
        a.write("now");
        EXPECT_EQ(a.received(), "now");
        EXPECT_FALSE(a.socket->has_pending_output());
      },
      /*events=*/1);
  EXPECT_EQ(a.recorder.drained, 0);
}

// Fills the socket's kernel buffer; returns what it wrote.
std::string fill(const Batched& s) {
  std::string filler;
  const std::string chunk(4096, 'f');
  for (ssize_t n; (n = send(s.fds[0], chunk.data(), chunk.size(), MSG_DONTWAIT)) > 0;)
    filler.append(chunk, 0, static_cast<std::size_t>(n));
  return filler;
}

// Reads what `s`'s peer gets until the socket reports its output drained.
std::string drain(SocketReactor& reactor, Batched& s) {
  std::string got = s.received();
  for (int turn = 0; turn < 50 && s.recorder.drained == 0; ++turn) {
    reactor.turn(100);
    got += s.received();
  }
  return got;
}

// `got` is `filler`, then `rest` (the filler's hundreds of KiB not printed).
void expect_after(const std::string& got, const std::string& filler, const std::string& rest) {
  EXPECT_TRUE(got.starts_with(filler)) << "the filler's bytes were not first";
  EXPECT_EQ(got.size() >= filler.size() ? got.substr(filler.size()) : got, rest);
}

TEST_F(SendBatchTest, WhatTheKernelRefusesWaitsForTheSocketToBeWritable) {
  Batched& full = socket();
  Batched& other = socket();
  const std::string filler = fill(full);
  in_a_turn([&] {
    full.write("after the filler");
    other.write("o");
  });
  EXPECT_EQ(other.received(), "o");
  EXPECT_TRUE(full.socket->backed_up());
  EXPECT_EQ(full.recorder.backed_up, 1);
  EXPECT_EQ(full.recorder.drained, 0);
  expect_after(drain(*reactor_, full), filler, "after the filler");
  EXPECT_EQ(full.recorder.drained, 1);
  EXPECT_FALSE(full.socket->has_pending_output());
}

// A handler that hears of its own socket's result writes to a later socket of the same batch,
// whose send left a remainder: its bytes follow that remainder.
TEST_F(SendBatchTest, AWriteFromAnotherSocketsCallbackFollowsTheRemainder) {
  Batched& gone = socket();
  Batched& full = socket();
  close(gone.fds[1]);
  gone.fds[1] = -1;
  const std::string filler = fill(full);
  gone.recorder.then = [&] { full.write(" and after"); };
  in_a_turn([&] {
    gone.write("lost");
    full.write("queued");
  });
  EXPECT_EQ(gone.recorder.error, UV_EPIPE);
  expect_after(drain(*reactor_, full), filler, "queued and after");
}

TEST_F(SendBatchTest, APeerGoneIsASocketError) {
  Batched& gone = socket();
  Batched& other = socket();
  close(gone.fds[1]);
  gone.fds[1] = -1;
  in_a_turn([&] {
    gone.write("lost");
    other.write("o");
  });
  EXPECT_EQ(gone.recorder.error, UV_EPIPE);
  EXPECT_EQ(other.received(), "o");
  EXPECT_EQ(other.recorder.error, 0);
}

TEST_F(SendBatchTest, ASocketClosedWithBytesQueuedSendsThemFirst) {
  Batched& closed = socket();
  Batched& flushed = socket();
  Batched& other = socket();
  in_a_turn([&] {
    closed.write("last words");
    flushed.write("bye");
    other.write("o");
    closed.socket.reset();
    EXPECT_EQ(closed.received(), "last words");  // at the close, not at the turn's end
    PollSocket::close_when_flushed(std::move(flushed.socket));
  });
  EXPECT_EQ(flushed.received(), "bye");
  char byte = 0;
  EXPECT_EQ(recv(closed.fds[1], &byte, 1, 0), 0) << "not closed";
  EXPECT_EQ(recv(flushed.fds[1], &byte, 1, 0), 0) << "not closed once flushed";
  EXPECT_EQ(other.received(), "o");
}

TEST_F(SendBatchTest, AFullBatchAndALargeWriteDoNotWait) {
  std::vector<Batched*> queued;
  for (unsigned i = 0; i < SendBatch::kMaxSockets; ++i) queued.push_back(&socket());
  Batched& one_more = socket();
  Batched& large = socket();
  const std::string big(20000, 'L');
  in_a_turn([&] {
    for (Batched* s : queued) s->write("q");
    one_more.write("at once");
    large.write(big);
    EXPECT_EQ(one_more.received(), "at once");
    EXPECT_EQ(large.received(), big);
    EXPECT_EQ(queued.front()->received(), "");
  });
  for (Batched* s : queued) EXPECT_EQ(s->received(), "q");
}

// `got` is `want`; long strings are not printed whole.
::testing::AssertionResult same(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  std::size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, not " << want.size() << "; they differ from byte " << at;
}

// A socket with bytes queued whose next write would take them past the batch's bound sends them at
// once, and the write after them: nothing large waits, nor is copied again behind others' bytes.
TEST_F(SendBatchTest, AWritePastTheQueuedBoundSendsTheQueuedBytesFirst) {
  Batched& a = socket();
  Batched& b = socket();
  const std::string half(10000, 'h');
  const std::string big(20000, 'L');
  in_a_turn([&] {
    a.write("q");
    b.write("b");
    a.write(big);  // too large to queue: "q" leaves first
    EXPECT_TRUE(same(a.received(), "q" + big));
    a.write(half);
    a.write(half);  // 20,000 bytes queued would be too many
    EXPECT_TRUE(same(a.received(), half + half));
    a.write("tail");
  });
  EXPECT_EQ(a.received(), "tail");
  EXPECT_EQ(b.received(), "b");
}

// The same, with the kernel's buffer full: the queued bytes and the write wait, in order, for the
// socket to be writable.
TEST_F(SendBatchTest, AWritePastTheBoundFollowsTheQueuedBytesItsSocketBackedUp) {
  Batched& full = socket();
  Batched& other = socket();
  const std::string filler = fill(full);
  const std::string big(20000, 'L');
  in_a_turn([&] {
    full.write("q");
    other.write("o");
    full.write(big);
    EXPECT_TRUE(full.socket->backed_up());
    full.write("z");  // behind the pending output, not queued ahead of it
  });
  EXPECT_EQ(other.received(), "o");
  expect_after(drain(*reactor_, full), filler, "q" + big + "z");
  EXPECT_FALSE(full.socket->has_pending_output());
}

// Queued bytes sent before the turn's end (send_queued_now: a server's at its release) that the
// kernel refuses wait for the socket to be writable, as a plain write's remainder does.
TEST_F(SendBatchTest, QueuedBytesSentEarlyThatTheKernelRefusesWaitForTheSocket) {
  Batched& full = socket();
  Batched& other = socket();
  std::string filler;
  in_a_turn([&] {
    full.write("queued");
    other.write("o");
    filler = fill(full);
    full.socket->send_queued_now();
    EXPECT_TRUE(full.socket->backed_up());
  });
  EXPECT_EQ(other.received(), "o");
  expect_after(drain(*reactor_, full), filler, "queued");
  EXPECT_FALSE(full.socket->has_pending_output());
}

// A socket backed up in an earlier turn: its next write, in a turn of several events, follows
// what waits for the socket to be writable.
TEST_F(SendBatchTest, AWriteToASocketBackedUpFollowsItsPendingOutput) {
  Batched& full = socket();
  Batched& other = socket();
  const std::string filler = fill(full);
  in_a_turn([&] {
    full.write("first");
    other.write("o");
  });
  ASSERT_TRUE(full.socket->backed_up());
  in_a_turn([&] {
    full.write(" second");
    other.write("o");
  });
  EXPECT_EQ(other.received(), "oo");
  expect_after(drain(*reactor_, full), filler, "first second");
}

// Makes the calling thread's system call `number` fail with `error`, as a seccomp profile refusing
// it does (Docker's default refuses io_uring's). Other threads are not affected.
bool refuse_in_this_thread(long number, int error) {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<__u32>(number), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<__u32>(error) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  const sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// The io_urings this process holds open (libuv 1.44, Debian 12's, opens none of its own).
int open_rings() {
  int rings = 0;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code unlinked;  // the directory's own descriptor, gone by now
    if (std::filesystem::read_symlink(fd.path(), unlinked) == "anon_inode:[io_uring]") ++rings;
  }
  return rings;
}

TEST_F(SendBatchTest, WhereIoUringIsRefusedTheSendsGoOneByOne) {
  Batched& a = socket();
  Batched& b = socket();
  const int rings_before = open_rings();
  bool no_filter = false;
  std::thread refused([&] {
    no_filter = !refuse_in_this_thread(SYS_io_uring_setup, ENOSYS);
    if (no_filter) return;
    in_a_turn([&] {
      a.write("a1");
      b.write("b1");
      a.write("a2");
      EXPECT_EQ(a.received(), "");
    });
  });
  refused.join();
  if (no_filter) GTEST_SKIP() << "no seccomp filter can be installed here";
  EXPECT_EQ(a.received(), "a1a2");
  EXPECT_EQ(b.received(), "b1");
  EXPECT_EQ(open_rings(), rings_before);
  EXPECT_EQ(a.recorder.error, 0);
}

// A ring that worked and then fails (io_uring_enter refused): the sends it never took go plain,
// and later turns send one by one.
TEST_F(SendBatchTest, ARingThatFailsLeavesItsSendsToPlainOnes) {
  Batched& a = socket();
  Batched& b = socket();
  const int rings_before = open_rings();
  bool no_ring = false;
  bool no_filter = false;
  std::thread failing([&] {
    in_a_turn([&] {
      a.write("1");
      b.write("1");
    });
    no_ring = open_rings() != rings_before + 1;
    no_filter = !no_ring && !refuse_in_this_thread(SYS_io_uring_enter, EPERM);
    if (no_ring || no_filter) return;
    for (const char* round : {"2", "3"}) {
      in_a_turn([&] {
        a.write(round);
        b.write(round);
      });
    }
  });
  failing.join();
  if (no_ring) GTEST_SKIP() << "the kernel (or a seccomp profile) refuses io_uring here";
  if (no_filter) GTEST_SKIP() << "no seccomp filter can be installed here";
  EXPECT_EQ(open_rings(), rings_before) << "the failed ring was kept";
  EXPECT_EQ(a.received(), "123");
  EXPECT_EQ(b.received(), "123");
  EXPECT_EQ(a.recorder.error, 0);
  EXPECT_EQ(b.recorder.error, 0);
}

}  // namespace
}  // namespace sluice::net
