// The live-upgrade handover framing (daemon/upgrade/handover_protocol.h): pure, no I/O.
#include <gtest/gtest.h>

#include "daemon/upgrade/handover_protocol.h"

namespace {

using sluice::daemon::upgrade::encode_message;
using sluice::daemon::upgrade::kMaxMessageBytes;
using sluice::daemon::upgrade::MessageReader;

TEST(UpgradeHandoverProtocol, MessagesSurviveAnySplit) {
  const std::string stream =
      encode_message({{"type", "hello"}, {"version", 1}}) + encode_message({{"type", "ready"}, {"pid", 42}});
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    MessageReader reader;
    std::vector<nlohmann::json> seen;
    for (const std::string_view part :
         {std::string_view(stream).substr(0, cut), std::string_view(stream).substr(cut)}) {
      reader.append(part);
      for (;;) {
        auto next = reader.next();
        ASSERT_TRUE(next.ok()) << next.error();
        if (!*next) break;
        seen.push_back(**next);
      }
    }
    ASSERT_EQ(seen.size(), 2U) << "cut at " << cut;
    EXPECT_EQ(seen[0]["type"], "hello");
    EXPECT_EQ(seen[1]["pid"], 42);
  }
}

TEST(UpgradeHandoverProtocol, LengthIsBigEndianBeforeTheJson) {
  const std::string frame = encode_message({{"type", "go"}});
  ASSERT_EQ(frame.size(), 4 + std::string(R"({"type":"go"})").size());
  EXPECT_EQ(frame.substr(0, 4), std::string("\0\0\0\x0d", 4));
  EXPECT_EQ(frame.substr(4), R"({"type":"go"})");
}

std::string framed(const std::string& text) {
  std::string frame(4, '\0');
  const auto size = static_cast<std::uint32_t>(text.size());
  for (int i = 0; i < 4; ++i)
    frame[static_cast<std::size_t>(i)] = static_cast<char>((size >> (24 - 8 * i)) & 0xff);
  return frame + text;
}

std::string error_of(const std::string& bytes) {
  MessageReader reader;
  reader.append(bytes);
  auto next = reader.next();
  return next.ok() ? "" : next.error();
}

TEST(UpgradeHandoverProtocol, BrokenMessagesAreErrors) {
  EXPECT_EQ(error_of(framed("not json")), "handover message is not JSON");
  EXPECT_EQ(error_of(framed("[1,2]")), "handover message without a \"type\"");
  EXPECT_EQ(error_of(framed(R"({"type":3})")), "handover message without a \"type\"");
  EXPECT_EQ(error_of(std::string("\xff\xff\xff\xff", 4)),
            "handover message of 4294967295 bytes (limit " + std::to_string(kMaxMessageBytes) + ")");
}

TEST(UpgradeHandoverProtocol, IncompleteIsNotYetAnError) {
  MessageReader reader;
  reader.append(framed(R"({"type":"go"})").substr(0, 7));
  auto next = reader.next();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
}

}  // namespace
