// The messages sluiced writes itself go straight to drivers, so each one is
// decoded here by a reader that shares no code with the builders.
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/backend_messages.h"

namespace sluice::protocol {
namespace {

// A minimal, independent v3 reader: bytes checked one by one. It views the
// caller's bytes, which must outlive it.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  std::uint8_t byte() {
    if (pos_ >= bytes_.size()) throw std::out_of_range("read past end");
    return static_cast<std::uint8_t>(bytes_[pos_++]);
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte();
    return v;
  }
  std::string cstring() {
    std::string s;
    for (std::uint8_t c = byte(); c != 0; c = byte()) s.push_back(static_cast<char>(c));
    return s;
  }
  [[nodiscard]] bool done() const { return pos_ == bytes_.size(); }
  [[nodiscard]] std::size_t pos() const { return pos_; }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

struct Message {
  char type = 0;
  std::string body;
};

// Splits `bytes` into whole messages; fails the test on any framing mistake.
std::vector<Message> split(const std::string& bytes) {
  std::vector<Message> messages;
  Reader reader(bytes);
  std::size_t at = 0;
  while (!reader.done()) {
    Message m;
    m.type = static_cast<char>(reader.byte());
    const std::uint32_t length = reader.u32();
    EXPECT_GE(length, 4u);
    EXPECT_LE(at + 1 + length, bytes.size()) << "message overruns the buffer";
    if (length < 4 || at + 1 + length > bytes.size()) return messages;
    m.body = bytes.substr(at + 5, length - 4);
    messages.push_back(m);
    at += 1 + length;
    for (std::uint32_t i = 0; i < length - 4; ++i) reader.byte();
  }
  return messages;
}

Message only_message(const std::string& bytes) {
  auto messages = split(bytes);
  EXPECT_EQ(messages.size(), 1u);
  return messages.empty() ? Message{} : messages.front();
}

using Fields = std::vector<std::pair<char, std::string>>;

// Error/Notice body: (code, cstring)* then a zero byte that ends the body.
Fields decode_fields(const std::string& body) {
  Reader reader(body);
  Fields fields;
  for (std::uint8_t code = reader.byte(); code != 0; code = reader.byte()) {
    fields.emplace_back(static_cast<char>(code), reader.cstring());
  }
  EXPECT_TRUE(reader.done()) << "bytes after the field terminator";
  return fields;
}

TEST(ProtocolBackendMessages, ErrorResponse) {
  std::string out;
  append_error_response(out, Severity::error, "57014", "canceling statement due to user request");
  const Message m = only_message(out);
  EXPECT_EQ(m.type, 'E');
  EXPECT_EQ(
      decode_fields(m.body),
      (Fields{
          {'S', "ERROR"}, {'V', "ERROR"}, {'C', "57014"}, {'M', "canceling statement due to user request"}}));
}

TEST(ProtocolBackendMessages, FatalErrorWithDetail) {
  std::string out;
  append_error_response(out, Severity::fatal, "53300", "too many clients", "pool \"shop\" is full");
  const Message m = only_message(out);
  EXPECT_EQ(m.type, 'E');
  EXPECT_EQ(decode_fields(m.body), (Fields{{'S', "FATAL"},
                                           {'V', "FATAL"},
                                           {'C', "53300"},
                                           {'M', "too many clients"},
                                           {'D', "pool \"shop\" is full"}}));
}

TEST(ProtocolBackendMessages, ErrorResponseExactBytes) {
  std::string out;
  append_error_response(out, Severity::error, "08P01", "bad");
  const std::string body = std::string("SERROR\0VERROR\0C08P01\0Mbad\0\0", 27);
  EXPECT_EQ(out, std::string("E\0\0\0\x1f", 5) + body);  // 0x1f = 27 + 4
}

TEST(ProtocolBackendMessages, EmbeddedNulCannotForgeFields) {
  std::string out;
  append_error_response(out, Severity::error, "XX000", std::string_view("oops\0Cevil", 10),
                        std::string_view("d\0", 2));
  EXPECT_EQ(decode_fields(only_message(out).body),
            (Fields{{'S', "ERROR"}, {'V', "ERROR"}, {'C', "XX000"}, {'M', "oops"}, {'D', "d"}}));
}

TEST(ProtocolBackendMessages, EmptyMessageField) {
  std::string out;
  append_error_response(out, Severity::error, "XX000", "");
  EXPECT_EQ(decode_fields(only_message(out).body),
            (Fields{{'S', "ERROR"}, {'V', "ERROR"}, {'C', "XX000"}, {'M', ""}}));
}

TEST(ProtocolBackendMessages, NoticeResponse) {
  std::string out;
  append_notice_response(out, "WARNING", "01000", "pool is draining");
  const Message m = only_message(out);
  EXPECT_EQ(m.type, 'N');
  EXPECT_EQ(decode_fields(m.body),
            (Fields{{'S', "WARNING"}, {'V', "WARNING"}, {'C', "01000"}, {'M', "pool is draining"}}));
}

TEST(ProtocolBackendMessages, AuthenticationOk) {
  std::string out;
  append_authentication_ok(out);
  EXPECT_EQ(out, std::string("R\0\0\0\x08\0\0\0\0", 9));
}

TEST(ProtocolBackendMessages, ParameterStatus) {
  std::string out;
  append_parameter_status(out, "server_version", "16.4");
  const Message m = only_message(out);
  EXPECT_EQ(m.type, 'S');
  Reader reader(m.body);
  EXPECT_EQ(reader.cstring(), "server_version");
  EXPECT_EQ(reader.cstring(), "16.4");
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(out.size(), 1 + 4 + 15 + 5u);
}

TEST(ProtocolBackendMessages, ParameterStatusEmptyValue) {
  std::string out;
  append_parameter_status(out, "application_name", "");
  const Message m = only_message(out);
  Reader reader(m.body);
  EXPECT_EQ(reader.cstring(), "application_name");
  EXPECT_EQ(reader.cstring(), "");
  EXPECT_TRUE(reader.done());
}

TEST(ProtocolBackendMessages, BackendKeyData) {
  std::string out;
  append_backend_key_data(out, 0x01020304, 0xfffefdfc);
  EXPECT_EQ(out, std::string("K\0\0\0\x0c\x01\x02\x03\x04\xff\xfe\xfd\xfc", 13));
}

TEST(ProtocolBackendMessages, ReadyForQuery) {
  for (char status : {'I', 'T', 'E'}) {
    std::string out;
    append_ready_for_query(out, status);
    EXPECT_EQ(out, std::string("Z\0\0\0\x05", 5) + status);
  }
}

TEST(ProtocolBackendMessages, NegotiateProtocolVersion) {
  std::string out;
  append_negotiate_protocol_version(out, 0, {"_pq_.compression", "_pq_.x"});
  const Message m = only_message(out);
  EXPECT_EQ(m.type, 'v');
  Reader reader(m.body);
  EXPECT_EQ(reader.u32(), 0u);  // newest minor
  EXPECT_EQ(reader.u32(), 2u);  // option count
  EXPECT_EQ(reader.cstring(), "_pq_.compression");
  EXPECT_EQ(reader.cstring(), "_pq_.x");
  EXPECT_TRUE(reader.done());
}

TEST(ProtocolBackendMessages, NegotiateProtocolVersionNoOptions) {
  std::string out;
  append_negotiate_protocol_version(out, 0, {});
  EXPECT_EQ(out, std::string("v\0\0\0\x0c\0\0\0\0\0\0\0\0", 13));
}

TEST(ProtocolBackendMessages, Query) {
  std::string out;
  append_query(out, "ROLLBACK");
  EXPECT_EQ(out, std::string("Q\0\0\0\x0dROLLBACK\0", 14));
}

TEST(ProtocolBackendMessages, QueryKeepsEmbeddedNulSoTheServerRejectsIt) {
  // Truncating would run a prefix of the statement; the server instead
  // refuses a Query whose string ends before the message does.
  std::string out;
  append_query(out, std::string_view("DELETE FROM t\0 WHERE id = 1", 27));
  const Message m = only_message(out);
  EXPECT_EQ(m.body.size(), 28u);
  EXPECT_EQ(m.body.back(), '\0');
}

TEST(ProtocolBackendMessages, Terminate) {
  std::string out;
  append_terminate(out);
  EXPECT_EQ(out, std::string("X\0\0\0\x04", 5));
}

TEST(ProtocolBackendMessages, AppendsAfterExistingBytes) {
  std::string out = "prefix";
  append_authentication_ok(out);
  append_parameter_status(out, "TimeZone", "UTC");
  append_backend_key_data(out, 1, 2);
  append_ready_for_query(out, 'I');
  ASSERT_EQ(out.substr(0, 6), "prefix");
  const auto messages = split(out.substr(6));
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_EQ(messages[0].type, 'R');
  EXPECT_EQ(messages[1].type, 'S');
  EXPECT_EQ(messages[2].type, 'K');
  EXPECT_EQ(messages[3].type, 'Z');
  EXPECT_EQ(messages[3].body, "I");
}

TEST(ProtocolBackendMessages, LongMessageLength) {
  std::string out;
  const std::string message(70000, 'm');  // length needs more than two bytes
  append_error_response(out, Severity::error, "XX000", message);
  const Message m = only_message(out);
  const Fields fields = decode_fields(m.body);
  ASSERT_EQ(fields.size(), 4u);
  EXPECT_EQ(fields[3].second, message);
}

}  // namespace
}  // namespace sluice::protocol
