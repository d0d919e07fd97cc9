// Reading the replies to Query messages sluiced sent itself: one result per ReadyForQuery.
#include <gtest/gtest.h>

#include <string>

#include "protocol/backend_messages.h"
#include "protocol/query_replies.h"

namespace sluice::protocol {
namespace {

std::string message(char type, const std::string& body = {}) {
  std::string out(1, type);
  append_u32(out, static_cast<std::uint32_t>(body.size() + 4));
  return out + body;
}

std::string data_row(const std::string& a, bool second_null) {
  std::string body;
  append_u16(body, 2);
  append_u32(body, static_cast<std::uint32_t>(a.size()));
  body += a;
  append_u32(body, second_null ? 0xFFFFFFFFU : 0U);
  return message('D', body);
}

const std::string kReady = message('Z', "I");

TEST(QueryRepliesTest, SplitsAtEachReadyForQuery) {
  std::string error;
  append_error_response(error, Severity::error, "22012", "division by zero");
  const std::string bytes = message('T', std::string(2, '\0')) + data_row("x", true) + data_row("", false) +
                            message('C', std::string("SELECT 2\0", 9)) + kReady + error + kReady;
  const auto replies = read_query_replies(as_bytes(bytes));
  ASSERT_TRUE(replies);
  ASSERT_EQ(replies->size(), 2U);
  ASSERT_EQ((*replies)[0].rows.size(), 2U);
  EXPECT_EQ((*replies)[0].rows[0][0], "x");
  EXPECT_EQ((*replies)[0].rows[0][1], std::nullopt);
  EXPECT_EQ((*replies)[0].rows[1][1], "");
  EXPECT_FALSE((*replies)[0].error);
  ASSERT_TRUE((*replies)[1].error);
  EXPECT_EQ((*replies)[1].error->sqlstate, "22012");
}

TEST(QueryRepliesTest, RefusesTruncatedOrMalformedReplies) {
  const std::string row = data_row("abc", false);
  EXPECT_FALSE(read_query_replies(as_bytes(row)));                        // no ReadyForQuery
  EXPECT_FALSE(read_query_replies(as_bytes(row.substr(0, 9) + kReady)));  // cut inside
  std::string lying = row;
  lying[8] = 9;  // the first column claims more bytes than the row holds
  EXPECT_FALSE(read_query_replies(as_bytes(lying + kReady)));
  EXPECT_FALSE(read_query_replies(as_bytes(kReady + row)));  // bytes after the last ReadyForQuery
}

}  // namespace
}  // namespace sluice::protocol
