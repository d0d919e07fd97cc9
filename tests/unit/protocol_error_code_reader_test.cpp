// The SQLSTATE of an ErrorResponse forwarded as it arrives: found however its body is cut into reads.
#include <gtest/gtest.h>

#include <string>

#include "protocol/backend_messages.h"
#include "protocol/error_code_reader.h"

namespace sluice::protocol {
namespace {

// The code read from `body` cut at `cut` (the first read) and then fed `step` bytes at a time.
std::string read_cut(const std::string& body, std::size_t cut, std::size_t step) {
  ErrorCodeReader reader;
  const Bytes whole = as_bytes(body);
  if (reader.start(whole.first(cut), body.size() - cut)) return reader.code();
  for (std::size_t at = cut; at < body.size(); at += step) {
    if (reader.feed(whole.subspan(at, std::min(step, body.size() - at)))) return reader.code();
  }
  return "unsettled";
}

TEST(ErrorCodeReader, FindsTheCodeWhereverTheReadsAreCut) {
  std::string message;
  append_error_response(message, Severity::error, "22012", std::string(5000, 'x'));
  const std::string body = message.substr(5);  // type and length go before the body
  for (std::size_t cut = 1; cut <= 40; ++cut) {
    EXPECT_EQ(read_cut(body, cut, 1), "22012") << "cut at " << cut;
    EXPECT_EQ(read_cut(body, cut, 3), "22012") << "cut at " << cut;
  }
  EXPECT_EQ(read_cut(body, body.size(), 1), "22012");
}

TEST(ErrorCodeReader, AnErrorWithoutACodeSettlesEmpty) {
  const std::string body("SERROR\0Mboom\0\0", 14);
  EXPECT_EQ(read_cut(body, body.size(), 1), "");
  EXPECT_EQ(read_cut(body, 3, 2), "");
  // A code beyond the bytes kept: unreadable, not waited for.
  const std::string late = "M" + std::string(1000, 'x') + std::string("\0C22012\0\0", 9);
  EXPECT_EQ(read_cut(late, 10, 100), "");
}

TEST(ErrorCodeReader, PendingCountsTheBodyStillToCome) {
  ErrorCodeReader reader;
  const std::string start("SERROR\0", 7);
  EXPECT_FALSE(reader.start(as_bytes(start), 20));
  EXPECT_EQ(reader.pending(), 20U);
  const std::string rest("C57014\0", 7);
  EXPECT_TRUE(reader.feed(as_bytes(rest)));
  EXPECT_EQ(reader.code(), "57014");
  EXPECT_EQ(reader.pending(), 0U);
}

}  // namespace
}  // namespace sluice::protocol
