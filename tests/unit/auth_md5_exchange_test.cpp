// Legacy md5 authentication, against the hashes PostgreSQL itself stores and expects.
#include <gtest/gtest.h>

#include "auth/md5_exchange.h"
#include "protocol/sqlstate.h"

namespace sluice::auth {
namespace {

using Verdict = AuthStep::Verdict;
constexpr std::array<std::uint8_t, 4> kSalt = {0x01, 0x02, 0xfe, 0xff};

std::string password_message(const std::string& answer) { return answer + '\0'; }

TEST(AuthMd5Exchange, HashIsPostgresFormat) {
  // PostgreSQL stores 'md5' || md5('secret' || 'alice') for this role and password.
  EXPECT_EQ(md5_password_hash("secret", "alice"), "4a0a68b43b6cd5cf266fa02f196e2371");
}

TEST(AuthMd5Exchange, RightAnswerPassesWrongOneFails) {
  const Md5Hash hash{md5_password_hash("secret", "alice")};
  Md5Exchange right({.user = "alice", .hash = hash, .salt = kSalt});
  const std::string challenge = right.start();
  ASSERT_EQ(challenge.size(), 13U);
  EXPECT_EQ(challenge[0], 'R');
  EXPECT_EQ(challenge.substr(5, 4), std::string("\0\0\0\5", 4));
  EXPECT_EQ(challenge.substr(9), std::string("\x01\x02\xfe\xff", 4));
  const std::string answer = password_message(md5_client_response("secret", "alice", kSalt));
  EXPECT_EQ(right.on_response(protocol::as_bytes(answer)).verdict, Verdict::ok);

  Md5Exchange wrong({.user = "alice", .hash = hash, .salt = kSalt});
  const AuthStep refused =
      wrong.on_response(protocol::as_bytes(password_message(md5_client_response("x", "alice", kSalt))));
  EXPECT_EQ(refused.verdict, Verdict::failed);
  EXPECT_STREQ(refused.error.sqlstate, sqlstate::kInvalidPassword);
}

TEST(AuthMd5Exchange, SaltsDifferSoAnAnswerCannotBeReplayed) {
  const Md5Hash hash{md5_password_hash("secret", "alice")};
  Md5Exchange first({.user = "alice", .hash = hash, .salt = std::nullopt});
  Md5Exchange second({.user = "alice", .hash = hash, .salt = std::nullopt});
  EXPECT_NE(first.start(), second.start());
}

TEST(AuthMd5Exchange, MalformedPacketIsAProtocolViolation) {
  Md5Exchange exchange(
      {.user = "alice", .hash = Md5Hash{md5_password_hash("secret", "alice")}, .salt = kSalt});
  const std::string no_nul = md5_client_response("secret", "alice", kSalt);
  const AuthStep step = exchange.on_response(protocol::as_bytes(no_nul));
  EXPECT_STREQ(step.error.sqlstate, sqlstate::kProtocolViolation);
  EXPECT_EQ(step.error.message, "invalid password packet size");
}

}  // namespace
}  // namespace sluice::auth
