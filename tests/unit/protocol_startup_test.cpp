// Startup packets are the first untrusted bytes of every connection: each
// check of PostgreSQL's ProcessStartupPacket gets a test here.
#include <gtest/gtest.h>

#include <cstdint>
#include <list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "protocol/sqlstate.h"
#include "protocol/startup.h"

namespace sluice::protocol {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

// Encoded by hand rather than with the code under test.
void put_u32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>((v >> 24) & 0xff));
  out.push_back(static_cast<char>((v >> 16) & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

// Prefixes `body` with a length that counts itself, as on the wire.
std::string framed(const std::string& body) {
  std::string packet;
  put_u32(packet, static_cast<std::uint32_t>(body.size() + 4));
  return packet + body;
}

std::string startup_body(std::uint32_t version, const Pairs& pairs) {
  std::string body;
  put_u32(body, version);
  for (const auto& [name, value] : pairs) {
    body += name;
    body.push_back('\0');
    body += value;
    body.push_back('\0');
  }
  body.push_back('\0');
  return body;
}

std::string startup(std::uint32_t version, const Pairs& pairs) {
  return framed(startup_body(version, pairs));
}

std::string code_only(std::uint32_t code) {
  std::string body;
  put_u32(body, code);
  return framed(body);
}

// A packet's parameters point into its bytes: each test's are kept until the program ends.
Result<StartupPacket, ProtocolError> parse(const std::string& packet) {
  static std::list<std::string> parsed;
  return parse_startup_packet(as_bytes(parsed.emplace_back(packet)));
}

Pairs copied(const std::vector<std::pair<std::string_view, std::string_view>>& parameters) {
  return {parameters.begin(), parameters.end()};
}

void expect_error(const Result<StartupPacket, ProtocolError>& result, const char* sqlstate,
                  const std::string& message) {
  ASSERT_FALSE(result.ok());
  EXPECT_STREQ(result.error().sqlstate, sqlstate);
  EXPECT_EQ(result.error().message, message);
}

void expect_bad_layout(const std::string& packet) {
  expect_error(parse(packet), sqlstate::kProtocolViolation,
               "invalid startup packet layout: expected terminator as last byte");
}

void expect_bad_length(const std::string& packet) {
  expect_error(parse(packet), sqlstate::kProtocolViolation, "invalid length of startup packet");
}

// ---------------------------------------------------------------- length

TEST(ProtocolStartupLength, NeedsFourBytes) {
  const std::string four = std::string("\0\0\0\x10", 4);
  for (std::size_t n = 0; n < 4; ++n) {
    auto result = startup_packet_length(as_bytes(four.substr(0, n)), kDefaultMaxStartupPacket);
    ASSERT_TRUE(result.ok()) << n;
    EXPECT_FALSE(result->has_value()) << n;
  }
  auto result = startup_packet_length(as_bytes(four), kDefaultMaxStartupPacket);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_value());
  EXPECT_EQ(**result, 16u);
}

TEST(ProtocolStartupLength, ReadsOnlyThePrefix) {
  const std::string buffer = startup(kProtocolVersion3, {{"user", "alice"}}) + "trailing bytes";
  auto result = startup_packet_length(as_bytes(buffer), kDefaultMaxStartupPacket);
  ASSERT_TRUE(result.ok());
  ASSERT_TRUE(result->has_value());
  EXPECT_EQ(**result, buffer.size() - 14);
}

TEST(ProtocolStartupLength, BoundsAreInclusive) {
  for (std::uint32_t length : {8u, 9u, 100u, 10000u}) {
    std::string buffer;
    put_u32(buffer, length);
    auto result = startup_packet_length(as_bytes(buffer), 10000);
    ASSERT_TRUE(result.ok()) << length;
    EXPECT_EQ(result->value(), length);
  }
}

TEST(ProtocolStartupLength, RejectsTooShortAndTooLong) {
  for (std::uint32_t length : {0u, 1u, 4u, 7u, 10001u, 0x7fffffffu, 0xffffffffu}) {
    std::string buffer;
    put_u32(buffer, length);
    auto result = startup_packet_length(as_bytes(buffer), 10000);
    ASSERT_FALSE(result.ok()) << length;
    EXPECT_STREQ(result.error().sqlstate, sqlstate::kProtocolViolation);
    EXPECT_EQ(result.error().message, "invalid length of startup packet");
  }
}

TEST(ProtocolStartupLength, HonoursConfiguredMaximum) {
  std::string buffer;
  put_u32(buffer, 64);
  EXPECT_TRUE(startup_packet_length(as_bytes(buffer), 64).ok());
  EXPECT_FALSE(startup_packet_length(as_bytes(buffer), 63).ok());
}

// ---------------------------------------------------------------- requests

TEST(ProtocolStartupParse, SslRequest) {
  auto result = parse(code_only(kSslRequestCode));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->kind, StartupKind::ssl_request);
  EXPECT_TRUE(result->parameters.empty());
}

TEST(ProtocolStartupParse, GssEncRequest) {
  auto result = parse(code_only(kGssEncRequestCode));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->kind, StartupKind::gssenc_request);
}

TEST(ProtocolStartupParse, CodeOnlyRequestsMustBeEightBytes) {
  for (std::uint32_t code : {kSslRequestCode, kGssEncRequestCode}) {
    std::string body;
    put_u32(body, code);
    expect_bad_length(framed(body + std::string(1, '\0')));
    expect_bad_length(framed(body + std::string(8, 'x')));
  }
}

TEST(ProtocolStartupParse, CancelRequest) {
  std::string body;
  put_u32(body, kCancelRequestCode);
  put_u32(body, 0x01020304);
  put_u32(body, 0xdeadbeef);
  auto result = parse(framed(body));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->kind, StartupKind::cancel_request);
  EXPECT_EQ(result->cancel_process_id, 0x01020304u);
  EXPECT_EQ(result->cancel_secret_key, 0xdeadbeefu);
}

TEST(ProtocolStartupParse, CancelRequestMustBeSixteenBytes) {
  std::string body;
  put_u32(body, kCancelRequestCode);
  expect_bad_length(framed(body));  // 8: no pid, no key
  put_u32(body, 42);
  expect_bad_length(framed(body));  // 12: no key
  put_u32(body, 7);
  ASSERT_TRUE(parse(framed(body)).ok());                   // 16
  expect_bad_length(framed(body + std::string(1, '\0')));  // 17
  expect_bad_length(framed(body + std::string(16, '\0')));
}

// ---------------------------------------------------------------- startup

TEST(ProtocolStartupParse, StartupMessageWithParameters) {
  const Pairs pairs = {
      {"user", "alice"}, {"database", "shop"}, {"application_name", "psql"}, {"client_encoding", "UTF8"}};
  auto result = parse(startup(kProtocolVersion3, pairs));
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->kind, StartupKind::startup);
  EXPECT_EQ(result->protocol_version, 0x00030000u);
  EXPECT_EQ(copied(result->parameters), pairs);  // order kept
  EXPECT_TRUE(result->protocol_options.empty());
  ASSERT_NE(result->parameter("database"), nullptr);
  EXPECT_EQ(*result->parameter("database"), "shop");
  EXPECT_EQ(*result->parameter("user"), "alice");
  EXPECT_EQ(result->parameter("options"), nullptr);
  EXPECT_EQ(result->parameter("use"), nullptr);  // no prefix matching
  EXPECT_EQ(result->parameter(""), nullptr);
}

TEST(ProtocolStartupParse, NoParametersAtAll) {
  auto result = parse(startup(kProtocolVersion3, {}));  // version + the terminator: 9 bytes
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->parameters.empty());
  EXPECT_EQ(result->parameter("user"), nullptr);
}

TEST(ProtocolStartupParse, MissingUserIsLeftToTheDaemon) {
  auto result = parse(startup(kProtocolVersion3, {{"database", "shop"}}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->parameter("user"), nullptr);
}

TEST(ProtocolStartupParse, EmptyValues) {
  auto result = parse(startup(kProtocolVersion3, {{"user", ""}, {"options", ""}}));
  ASSERT_TRUE(result.ok());
  ASSERT_EQ(result->parameters.size(), 2u);
  ASSERT_NE(result->parameter("user"), nullptr);
  EXPECT_EQ(*result->parameter("user"), "");
  EXPECT_EQ(*result->parameter("options"), "");
}

TEST(ProtocolStartupParse, RepeatedNameLastWins) {
  auto result = parse(startup(kProtocolVersion3, {{"user", "a"}, {"user", "b"}}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->parameters.size(), 2u);
  EXPECT_EQ(*result->parameter("user"), "b");
}

TEST(ProtocolStartupParse, BinaryValueBytes) {
  const std::string value = "\x01\xff\x7f caf\xc3\xa9";
  auto result = parse(startup(kProtocolVersion3, {{"application_name", value}}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(*result->parameter("application_name"), value);
}

TEST(ProtocolStartupParse, ProtocolOptionsAreSetAside) {
  auto result = parse(startup(kProtocolVersion3, {{"user", "alice"},
                                                  {"_pq_.compression", "on"},
                                                  {"database", "shop"},
                                                  {"_pq_.", "x"},
                                                  {"_pq", "not an option"}}));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->protocol_options, (std::vector<std::string>{"_pq_.compression", "_pq_."}));
  EXPECT_EQ(copied(result->parameters),
            (Pairs{{"user", "alice"}, {"database", "shop"}, {"_pq", "not an option"}}));
  EXPECT_EQ(result->parameter("_pq_.compression"), nullptr);
}

TEST(ProtocolStartupParse, NewerMinorVersionStillParses) {
  for (std::uint32_t minor : {1u, 2u, 0xffffu}) {
    auto result = parse(startup((3u << 16) | minor, {{"user", "alice"}}));
    ASSERT_TRUE(result.ok()) << minor;
    EXPECT_EQ(result->kind, StartupKind::startup);
    EXPECT_EQ(result->protocol_version, (3u << 16) | minor);
    EXPECT_EQ(*result->parameter("user"), "alice");
  }
}

TEST(ProtocolStartupParse, UnsupportedMajorVersion) {
  expect_error(parse(startup(2u << 16, {{"user", "alice"}})), sqlstate::kFeatureNotSupported,
               "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
  expect_error(parse(startup((4u << 16) | 1, {{"user", "alice"}})), sqlstate::kFeatureNotSupported,
               "unsupported frontend protocol 4.1: server supports 3.0 to 3.0");
  expect_error(parse(startup(0, {})), sqlstate::kFeatureNotSupported,
               "unsupported frontend protocol 0.0: server supports 3.0 to 3.0");
  // A request code we do not know (1234.5681) is just a strange version.
  expect_error(parse(code_only(80877105)), sqlstate::kFeatureNotSupported,
               "unsupported frontend protocol 1234.5681: server supports 3.0 to 3.0");
}

// ---------------------------------------------------------------- layout errors

std::string raw_startup(const std::string& after_version) {
  std::string body;
  put_u32(body, kProtocolVersion3);
  return framed(body + after_version);
}

TEST(ProtocolStartupParse, VersionWithoutTerminator) {
  expect_bad_layout(raw_startup(""));  // 8 bytes: nothing after the version
}

TEST(ProtocolStartupParse, PairsWithoutTerminator) {
  expect_bad_layout(raw_startup(std::string("user\0alice\0", 11)));
}

TEST(ProtocolStartupParse, NameWithoutValue) { expect_bad_layout(raw_startup(std::string("user\0", 5))); }

TEST(ProtocolStartupParse, UnterminatedName) {
  expect_bad_layout(raw_startup("user"));
  expect_bad_layout(raw_startup(std::string("user\0alice\0database", 19)));
}

TEST(ProtocolStartupParse, UnterminatedValue) {
  expect_bad_layout(raw_startup(std::string("user\0alice", 10)));
}

TEST(ProtocolStartupParse, EmptyValueButNoTerminator) {
  expect_bad_layout(raw_startup(std::string("user\0\0", 6)));
}

TEST(ProtocolStartupParse, BytesAfterTerminator) {
  expect_bad_layout(raw_startup(std::string("user\0alice\0\0\0", 13)));
  expect_bad_layout(raw_startup(std::string("user\0alice\0\0x", 13)));
  expect_bad_layout(raw_startup(std::string("\0\0", 2)));
  expect_bad_layout(raw_startup(std::string("\0user\0alice\0\0", 13)));
}

// ---------------------------------------------------------------- framing

TEST(ProtocolStartupParse, LengthPrefixMustMatchSpan) {
  const std::string packet = startup(kProtocolVersion3, {{"user", "alice"}});
  expect_bad_length(packet + "x");                         // span longer than the prefix says
  expect_bad_length(packet.substr(0, packet.size() - 1));  // span shorter
}

TEST(ProtocolStartupParse, ShorterThanEightBytes) {
  expect_bad_length("");
  const std::string packet = startup(kProtocolVersion3, {});
  for (std::size_t n = 0; n < 8; ++n) expect_bad_length(packet.substr(0, n));
  // Self-consistent but too short to hold a version.
  expect_bad_length(std::string("\0\0\0\x04", 4));
  expect_bad_length(std::string("\0\0\0\x07\x00\x03\x00", 7));
}

TEST(ProtocolStartupParse, EveryTruncationFails) {
  const std::string packet =
      startup(kProtocolVersion3, {{"user", "alice"}, {"database", "shop"}, {"options", ""}});
  ASSERT_TRUE(parse(packet).ok());
  for (std::size_t n = 0; n < packet.size(); ++n) {
    // As cut off: the prefix no longer matches the span.
    EXPECT_FALSE(parse(packet.substr(0, n)).ok()) << n;
    // Cut off and relabelled, so only the layout checks can catch it.
    if (n >= 8) {
      std::string relabelled = packet.substr(0, n);
      std::string prefix;
      put_u32(prefix, static_cast<std::uint32_t>(n));
      relabelled.replace(0, 4, prefix);
      expect_bad_layout(relabelled);
    }
  }
}

// Cheap stand-in for the fuzzer: random and mutated input must never crash or
// read out of bounds (run under SLUICE_SANITIZE to make that visible).
TEST(ProtocolStartupParse, SurvivesGarbage) {
  std::mt19937 rng(12345);
  const std::string seed = startup(kProtocolVersion3, {{"user", "alice"}, {"_pq_.x", "1"}});
  for (int round = 0; round < 20000; ++round) {
    std::string input;
    if (round % 2 == 0) {
      input = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        input[rng() % input.size()] = static_cast<char>(rng() % 4 == 0 ? 0 : rng());
      }
      if (rng() % 3 == 0) input.resize(rng() % (input.size() + 1));
    } else {
      input.resize(rng() % 40);
      for (char& c : input) c = static_cast<char>(rng() % 3 == 0 ? 0 : rng());
    }
    if (round % 5 == 0 && input.size() >= 4) {  // make the length prefix agree
      std::string prefix;
      put_u32(prefix, static_cast<std::uint32_t>(input.size()));
      input.replace(0, 4, prefix);
    }
    const auto length = startup_packet_length(as_bytes(input), kDefaultMaxStartupPacket);
    const auto result = parse(input);
    if (result.ok() && result->kind == StartupKind::startup) {
      EXPECT_TRUE(length.ok());
      EXPECT_EQ(input.back(), '\0');
    }
  }
}

}  // namespace
}  // namespace sluice::protocol
