// The old process's copies of moved clients' sockets (daemon/upgrade/unconfirmed_moves.h): an
// adopted client's closes without a word, a declined one's, or all of them when the new process
// dies, are drained as a drain would: PostgreSQL's 57P01 FATAL, then the end of the connection.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "daemon/upgrade/unconfirmed_moves.h"

namespace sluice::daemon::upgrade {
namespace {

// A client connection: `client` is the client's end, `held` the copy the old process keeps.
struct Client {
  Client() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0); }
  ~Client() { ::close(ends[0]); }
  // Everything the client reads until the end of the connection.
  std::string read_to_end() const {
    std::string all;
    char chunk[512];
    for (ssize_t n; (n = ::recv(ends[0], chunk, sizeof chunk, 0)) > 0;)
      all.append(chunk, static_cast<std::size_t>(n));
    return all;
  }
  int ends[2] = {-1, -1};
  [[nodiscard]] int held() const { return ends[1]; }
};

bool is_admin_shutdown(const std::string& bytes) {
  return !bytes.empty() && bytes[0] == 'E' && bytes.find(std::string("SFATAL\0", 7)) != std::string::npos &&
         bytes.find(std::string("C57P01\0", 7)) != std::string::npos &&
         bytes.find("Mterminating connection due to administrator command") != std::string::npos;
}

TEST(UpgradeUnconfirmedMoves, AnAdoptedClientsCopyClosesWithoutAWord) {
  UnconfirmedMoves moves;
  Client client;
  const auto move = moves.hold(client.held());
  EXPECT_FALSE(moves.empty());
  moves.settle(move, /*adopted=*/true);
  EXPECT_TRUE(moves.empty());
  EXPECT_EQ(client.read_to_end(), "");
}

TEST(UpgradeUnconfirmedMoves, ADeclinedClientIsDrainedWith57P01) {
  UnconfirmedMoves moves;
  Client declined;
  Client adopted;
  const auto first = moves.hold(declined.held());
  const auto second = moves.hold(adopted.held());
  EXPECT_NE(first, second);
  moves.settle(first, /*adopted=*/false);
  moves.settle(first, /*adopted=*/false);  // twice, or a move not ours: nothing happens
  moves.settle(999, /*adopted=*/false);
  EXPECT_EQ(moves.size(), 1U);
  EXPECT_TRUE(is_admin_shutdown(declined.read_to_end()));
  moves.settle(second, /*adopted=*/true);
  EXPECT_EQ(adopted.read_to_end(), "");
}

TEST(UpgradeUnconfirmedMoves, WhenTheNewProcessDiesEveryClientHeldIsDrained) {
  UnconfirmedMoves moves;
  Client one;
  Client two;
  moves.hold(one.held());
  moves.hold(two.held());
  moves.drain_all();
  EXPECT_TRUE(moves.empty());
  EXPECT_TRUE(is_admin_shutdown(one.read_to_end()));
  EXPECT_TRUE(is_admin_shutdown(two.read_to_end()));
}

TEST(UpgradeUnconfirmedMoves, ForgottenCopiesCloseWithoutAWord) {
  Client client;
  {
    UnconfirmedMoves moves;
    moves.hold(client.held());
  }  // the destructor forgets them: this process exits, the new one holds the client
  EXPECT_EQ(client.read_to_end(), "");
}

}  // namespace
}  // namespace sluice::daemon::upgrade
