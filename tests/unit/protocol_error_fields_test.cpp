// Reading PostgreSQL's errors: ErrorResponse fields, and libpq's verbose text of a refused login.
#include <gtest/gtest.h>

#include <string>

#include "protocol/backend_messages.h"
#include "protocol/error_fields.h"

namespace {

using sluice::protocol::append_error_response;
using sluice::protocol::as_bytes;
using sluice::protocol::find_verbose_error;
using sluice::protocol::read_error_fields;
using sluice::protocol::Severity;

TEST(ProtocolErrorFields, ReadsTheFieldsOfAnErrorResponse) {
  std::string message;
  append_error_response(message, Severity::fatal, "57P01",
                        "terminating connection due to administrator command", "some detail");
  const auto fields = read_error_fields(as_bytes(message));
  ASSERT_TRUE(fields);
  EXPECT_EQ(fields->severity, "FATAL");
  EXPECT_EQ(fields->sqlstate, "57P01");
  EXPECT_EQ(fields->message, "terminating connection due to administrator command");
  EXPECT_EQ(fields->describe(), "FATAL 57P01 terminating connection due to administrator command");
}

TEST(ProtocolErrorFields, PrefersTheNonLocalizedSeverity) {
  std::string message = "E";
  const std::string body = std::string("SFATALE\0VFATAL\0C53300\0Mzu viele Verbindungen\0\0", 46);
  sluice::protocol::append_u32(message, static_cast<std::uint32_t>(body.size() + 4));
  message += body;
  const auto fields = read_error_fields(as_bytes(message));
  ASSERT_TRUE(fields);
  EXPECT_EQ(fields->severity, "FATAL");
  EXPECT_EQ(fields->message, "zu viele Verbindungen");
}

TEST(ProtocolErrorFields, RejectsMalformedMessages) {
  std::string good;
  append_error_response(good, Severity::error, "42P01", "relation does not exist");
  EXPECT_FALSE(read_error_fields(as_bytes(good.substr(0, good.size() - 3))));  // length disagrees
  std::string truncated = good;
  truncated.pop_back();  // the terminating NUL
  truncated.pop_back();  // and the message's own
  sluice::protocol::Bytes bytes = as_bytes(truncated);
  EXPECT_FALSE(read_error_fields(bytes));
  std::string no_code;
  append_error_response(no_code, Severity::error, "", "no code");
  EXPECT_FALSE(read_error_fields(as_bytes(no_code)));
  EXPECT_FALSE(read_error_fields(as_bytes(std::string("Z\0\0\0\5I", 6))));
}

TEST(ProtocolErrorFields, FindsTheErrorInLibpqVerboseText) {
  const auto full = find_verbose_error(
      "connection to server on socket \"/tmp/x/.s.PGSQL.5432\" failed: FATAL:  53300: sorry, too many "
      "clients "
      "already\nLOCATION:  InitProcess, proc.c:358\n");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->severity, "FATAL");
  EXPECT_EQ(full->sqlstate, "53300");
  EXPECT_EQ(full->message, "sorry, too many clients already");

  const auto later_line =
      find_verbose_error("first line: no code here\nFATAL:  28P01: password authentication failed");
  ASSERT_TRUE(later_line);
  EXPECT_EQ(later_line->sqlstate, "28P01");
}

TEST(ProtocolErrorFields, SocketFailuresCarryNoSqlstate) {
  EXPECT_FALSE(
      find_verbose_error("connection to server on socket \"/tmp/x/.s.PGSQL.5999\" failed: No such file or "
                         "directory\n\tIs the server running locally?\n"));
  EXPECT_FALSE(find_verbose_error("FATAL:  5330: too short"));
  EXPECT_FALSE(find_verbose_error(""));
  EXPECT_FALSE(find_verbose_error(":  12345: no severity word"));
}

}  // namespace
