// The scanner sees the stream in whatever pieces the socket hands over, so the
// same bytes are fed here cut at every position and must give the same events.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/message_scanner.h"

namespace sluice::protocol {
namespace {

constexpr std::uint32_t kMax = 1 << 20;

void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::string header(char type, std::uint32_t length) {
  std::string out(1, type);
  put_u32(out, length);
  return out;
}

// A message as the test expects to see it, with absolute stream offsets.
struct Expected {
  char type;
  std::uint32_t length;
  std::uint8_t first_byte;
  std::size_t begin;
  std::size_t end;
};

class Stream {
 public:
  Stream& add(char type, const std::string& body) {
    const auto length = static_cast<std::uint32_t>(body.size() + 4);
    const std::uint8_t first = body.empty() ? 0 : static_cast<std::uint8_t>(body[0]);
    expected_.push_back({type, length, first, bytes_.size(), bytes_.size() + 1 + length});
    bytes_ += header(type, length) + body;
    return *this;
  }
  [[nodiscard]] const std::string& bytes() const { return bytes_; }
  [[nodiscard]] const std::vector<Expected>& expected() const { return expected_; }
  [[nodiscard]] bool is_boundary(std::size_t offset) const {
    if (offset == 0) return true;
    for (const auto& e : expected_) {
      if (e.end == offset) return true;
    }
    return false;
  }

 private:
  std::string bytes_;
  std::vector<Expected> expected_;
};

// Several shapes at once: empty bodies, one-byte bodies, long bodies, and a
// body whose first byte is zero (so first_byte 0 is not mistaken for "none").
Stream mixed_stream() {
  Stream s;
  s.add('Q', std::string("SELECT 1", 9))
      .add('X', "")
      .add('Z', "I")
      .add('D', std::string("\0\x01\0\0\0\x01"
                            "1",
                            7))
      .add('Z', "T")
      .add('C', std::string("SELECT 1\0", 9))
      .add('X', "")
      .add('X', "")
      .add('d', std::string(300, 'x'))
      .add('Z', "E");
  return s;
}

struct Seen {
  MessageEvent event;
  std::size_t chunk_begin;
  std::size_t chunk_size;
};

Bytes bytes_of(const std::string& s, std::size_t begin, std::size_t size) {
  return as_bytes(s).subspan(begin, size);
}

// Feeds `stream` cut at `cuts` (ascending, inside the stream) and checks
// every event and every boundary against the expectation.
void check_cuts(const Stream& stream, const std::vector<std::size_t>& cuts) {
  const std::string& bytes = stream.bytes();
  const auto& expected = stream.expected();
  MessageScanner scanner(kMax);
  std::vector<Seen> seen;
  std::size_t begin = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (std::size_t end : ends) {
    const std::size_t size = end - begin;
    const ScanResult result = scanner.scan(bytes_of(bytes, begin, size), [&](const MessageEvent& e) {
      seen.push_back({e, begin, size});
      return true;
    });
    ASSERT_EQ(result.status, ScanStatus::ok);
    ASSERT_EQ(result.consumed, size);
    EXPECT_EQ(scanner.at_boundary(), stream.is_boundary(end)) << "after offset " << end;
    begin = end;
  }
  ASSERT_EQ(seen.size(), expected.size());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const MessageEvent& e = seen[i].event;
    const Expected& x = expected[i];
    SCOPED_TRACE("message " + std::to_string(i));
    EXPECT_EQ(e.type, x.type);
    EXPECT_EQ(e.length, x.length);
    EXPECT_EQ(e.first_byte, x.first_byte);
    // Reported in the chunk holding the header's last byte or the first body byte.
    const std::size_t trigger = x.begin + (x.length > 4 ? 5 : 4);
    EXPECT_GE(trigger, seen[i].chunk_begin);
    EXPECT_LT(trigger, seen[i].chunk_begin + seen[i].chunk_size);
    // Where the routers edit (from the type byte, if it is in this chunk) and where an error's
    // fields begin: the first body byte, always in this chunk, or for an empty body the message's
    // end (which may be the chunk's end).
    if (x.begin >= seen[i].chunk_begin) {
      EXPECT_EQ(seen[i].chunk_begin + e.start, x.begin);
    } else {
      EXPECT_EQ(e.start, MessageEvent::kEarlier);
    }
    EXPECT_EQ(seen[i].chunk_begin + e.body, x.begin + 5);
    if (e.complete()) {
      EXPECT_EQ(seen[i].chunk_begin + e.end, x.end);
    } else {
      EXPECT_GT(x.end, seen[i].chunk_begin + seen[i].chunk_size);
    }
  }
}

std::vector<MessageEvent> scan_all(MessageScanner& scanner, const std::string& chunk,
                                   ScanResult* result = nullptr) {
  std::vector<MessageEvent> events;
  const ScanResult r = scanner.scan(as_bytes(chunk), [&](const MessageEvent& e) {
    events.push_back(e);
    return true;
  });
  if (result != nullptr) *result = r;
  return events;
}

// ---------------------------------------------------------------- splitting

TEST(ProtocolMessageScanner, WholeStreamInOneChunk) { check_cuts(mixed_stream(), {}); }

TEST(ProtocolMessageScanner, SplitAtEveryPosition) {
  const Stream stream = mixed_stream();
  for (std::size_t cut = 0; cut <= stream.bytes().size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    check_cuts(stream, {cut});
  }
}

TEST(ProtocolMessageScanner, SplitAtEveryPairOfPositions) {
  Stream stream;  // smaller, since this is quadratic
  stream.add('Z', "I").add('X', "").add('Q', "BEGIN").add('X', "").add('D', "ab");
  const std::size_t n = stream.bytes().size();
  for (std::size_t a = 0; a <= n; ++a) {
    for (std::size_t b = a; b <= n; ++b) {
      SCOPED_TRACE("cuts at " + std::to_string(a) + ", " + std::to_string(b));
      check_cuts(stream, {a, b});
    }
  }
}

TEST(ProtocolMessageScanner, OneByteAtATime) {
  const Stream stream = mixed_stream();
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < stream.bytes().size(); ++i) cuts.push_back(i);
  check_cuts(stream, cuts);
}

TEST(ProtocolMessageScanner, EmptyChunk) {
  MessageScanner scanner(kMax);
  ScanResult result;
  EXPECT_TRUE(scan_all(scanner, "", &result).empty());
  EXPECT_EQ(result.status, ScanStatus::ok);
  EXPECT_EQ(result.consumed, 0u);
  EXPECT_TRUE(scanner.at_boundary());
}

// ---------------------------------------------------------------- short messages

TEST(ProtocolMessageScanner, TerminateHasNoBody) {
  MessageScanner scanner(kMax);
  const auto events = scan_all(scanner, header('X', 4) + header('Z', 5) + "I");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, 'X');
  EXPECT_EQ(events[0].length, 4u);
  EXPECT_EQ(events[0].first_byte, 0);  // the next message's type is not its body
  EXPECT_EQ(events[0].end, 5u);
  EXPECT_EQ(events[1].first_byte, 'I');
}

TEST(ProtocolMessageScanner, TerminateReportedOnItsLastHeaderByte) {
  MessageScanner scanner(kMax);
  const std::string x = header('X', 4);
  EXPECT_TRUE(scan_all(scanner, x.substr(0, 4)).empty());
  EXPECT_FALSE(scanner.at_boundary());
  const auto events = scan_all(scanner, x.substr(4));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].end, 1u);
  EXPECT_TRUE(events[0].complete());
  EXPECT_TRUE(scanner.at_boundary());
}

TEST(ProtocolMessageScanner, ReadyForQueryStatusIsFirstByte) {
  for (char status : {'I', 'T', 'E'}) {
    MessageScanner scanner(kMax);
    const auto events = scan_all(scanner, header('Z', 5) + status);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, 'Z');
    EXPECT_EQ(events[0].length, 5u);
    EXPECT_EQ(events[0].first_byte, static_cast<std::uint8_t>(status));
    EXPECT_EQ(events[0].end, 6u);
    EXPECT_TRUE(scanner.at_boundary());
  }
}

TEST(ProtocolMessageScanner, ReadyForQueryWaitsForStatusByte) {
  MessageScanner scanner(kMax);
  EXPECT_TRUE(scan_all(scanner, header('Z', 5)).empty());  // header alone is not enough
  EXPECT_FALSE(scanner.at_boundary());
  const auto events = scan_all(scanner, std::string("T") + header('X', 4));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].first_byte, 'T');
  EXPECT_EQ(events[0].end, 1u);
  EXPECT_TRUE(events[0].complete());
  EXPECT_EQ(events[1].type, 'X');
  EXPECT_EQ(events[1].end, 6u);
}

TEST(ProtocolMessageScanner, LongBodyContinuesAcrossChunks) {
  MessageScanner scanner(kMax);
  const std::string message = header('D', 104) + std::string(100, 'b');
  auto events = scan_all(scanner, message.substr(0, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first_byte, 'b');
  EXPECT_FALSE(events[0].complete());
  EXPECT_EQ(events[0].end, MessageEvent::kContinues);
  EXPECT_TRUE(scan_all(scanner, message.substr(10, 50)).empty());
  EXPECT_FALSE(scanner.at_boundary());
  EXPECT_TRUE(scan_all(scanner, message.substr(60)).empty());  // no second report
  EXPECT_TRUE(scanner.at_boundary());
}

// ---------------------------------------------------------------- stopping

TEST(ProtocolMessageScanner, StopLeavesRestOfChunk) {
  const Stream stream = mixed_stream();
  const auto& expected = stream.expected();
  MessageScanner scanner(kMax);
  int calls = 0;
  const ScanResult result = scanner.scan(as_bytes(stream.bytes()), [&](const MessageEvent& e) {
    ++calls;
    return e.type != 'Z';  // stop at the first ReadyForQuery
  });
  EXPECT_EQ(result.status, ScanStatus::stopped);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(result.consumed, expected[2].end);
  EXPECT_TRUE(scanner.at_boundary());

  // The remainder, fed again, picks up at the next message.
  const std::string rest = stream.bytes().substr(result.consumed);
  ScanResult second;
  const auto events = scan_all(scanner, rest, &second);
  EXPECT_EQ(second.status, ScanStatus::ok);
  EXPECT_EQ(second.consumed, rest.size());
  ASSERT_EQ(events.size(), expected.size() - 3);
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].type, expected[i + 3].type);
    EXPECT_EQ(result.consumed + events[i].end, expected[i + 3].end);
  }
}

TEST(ProtocolMessageScanner, StopAfterEveryMessage) {
  const Stream stream = mixed_stream();
  MessageScanner scanner(kMax);
  std::size_t offset = 0;
  for (const Expected& x : stream.expected()) {
    std::vector<MessageEvent> events;
    const ScanResult result = scanner.scan(bytes_of(stream.bytes(), offset, stream.bytes().size() - offset),
                                           [&](const MessageEvent& e) {
                                             events.push_back(e);
                                             return false;
                                           });
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].type, x.type);
    EXPECT_EQ(result.status, ScanStatus::stopped);
    EXPECT_EQ(offset + result.consumed, x.end);
    EXPECT_TRUE(scanner.at_boundary());
    offset += result.consumed;
  }
  EXPECT_EQ(offset, stream.bytes().size());
}

TEST(ProtocolMessageScanner, StopOnLastMessageConsumesWholeChunk) {
  MessageScanner scanner(kMax);
  const std::string chunk = header('X', 4);
  const ScanResult result = scanner.scan(as_bytes(chunk), [](const MessageEvent&) { return false; });
  EXPECT_EQ(result.status, ScanStatus::stopped);
  EXPECT_EQ(result.consumed, chunk.size());
}

TEST(ProtocolMessageScanner, StopOnIncompleteMessageKeepsFollowingIt) {
  // Callers should stop only on complete messages; if one does not, the
  // scanner must still stay in step with the stream.
  MessageScanner scanner(kMax);
  const std::string message = header('D', 14) + "0123456789";
  const ScanResult result =
      scanner.scan(as_bytes(message.substr(0, 8)), [](const MessageEvent&) { return false; });
  EXPECT_EQ(result.status, ScanStatus::stopped);
  EXPECT_EQ(result.consumed, 8u);
  EXPECT_FALSE(scanner.at_boundary());
  const auto events = scan_all(scanner, message.substr(8) + header('X', 4));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, 'X');
  EXPECT_TRUE(scanner.at_boundary());
}

// ---------------------------------------------------------------- bad input

TEST(ProtocolMessageScanner, LengthBelowFourIsBadLength) {
  for (std::uint32_t length = 0; length < 4; ++length) {
    MessageScanner scanner(kMax);
    const std::string good = header('Z', 5) + "I";
    ScanResult result;
    const auto events = scan_all(scanner, good + header('Q', length) + "trailing", &result);
    EXPECT_EQ(result.status, ScanStatus::bad_length) << length;
    EXPECT_EQ(result.consumed, good.size() + 5) << length;  // just past the bad length field
    ASSERT_EQ(events.size(), 1u);                           // messages before it were reported
    EXPECT_EQ(events[0].type, 'Z');
  }
}

TEST(ProtocolMessageScanner, BadLengthFoundInLaterChunk) {
  const std::string bad = header('Q', 3);
  for (std::size_t cut = 1; cut < bad.size(); ++cut) {
    MessageScanner scanner(kMax);
    ScanResult first;
    EXPECT_TRUE(scan_all(scanner, bad.substr(0, cut), &first).empty());
    EXPECT_EQ(first.status, ScanStatus::ok);
    ScanResult second;
    scan_all(scanner, bad.substr(cut) + "more", &second);
    EXPECT_EQ(second.status, ScanStatus::bad_length) << cut;
    EXPECT_EQ(second.consumed, bad.size() - cut) << cut;
  }
}

TEST(ProtocolMessageScanner, LengthAboveMaximumIsTooLong) {
  MessageScanner scanner(100);
  ScanResult result;
  const auto events = scan_all(scanner, header('X', 4) + header('D', 101) + "x", &result);
  EXPECT_EQ(result.status, ScanStatus::too_long);
  EXPECT_EQ(result.consumed, 10u);
  EXPECT_EQ(events.size(), 1u);

  MessageScanner huge(100);
  scan_all(huge, header('D', 0xffffffff), &result);
  EXPECT_EQ(result.status, ScanStatus::too_long);
}

TEST(ProtocolMessageScanner, LengthAtMaximumIsAccepted) {
  MessageScanner scanner(100);
  ScanResult result;
  const auto events = scan_all(scanner, header('D', 100) + std::string(96, 'x'), &result);
  EXPECT_EQ(result.status, ScanStatus::ok);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].end, 101u);
  EXPECT_TRUE(scanner.at_boundary());
}

TEST(ProtocolMessageScanner, LargestLengthSkipsWithoutOverflow) {
  // 4 GiB of body, fed from one reused buffer: the scanner never reads it.
  MessageScanner scanner(0xffffffff);
  auto events = scan_all(scanner, header('D', 0xffffffff) + "f");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].length, 0xffffffffu);
  EXPECT_FALSE(events[0].complete());
  std::uint64_t left = 0xffffffffull - 5;  // body minus the first byte
  const std::string block(1 << 20, 'z');
  while (left > 0) {
    const std::size_t n = left < block.size() ? static_cast<std::size_t>(left) : block.size();
    int calls = 0;
    const ScanResult result = scanner.scan(as_bytes(block).first(n), [&](const MessageEvent&) {
      ++calls;
      return true;
    });
    ASSERT_EQ(calls, 0);
    ASSERT_EQ(result.consumed, n);
    left -= n;
    EXPECT_EQ(scanner.at_boundary(), left == 0);
  }
  events = scan_all(scanner, header('Z', 5) + "I");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, 'Z');
}

TEST(ProtocolMessageScanner, ErrorsAreStickyUntilReset) {
  // The rejected header alone, or with bytes behind it in the same read (a header read in place).
  for (const std::string& behind : std::vector<std::string>{"", "x", "trailing bytes"}) {
    for (const std::uint32_t length : {2u, 0x7fffffffu}) {  // bad_length, too_long
      SCOPED_TRACE("length " + std::to_string(length) + ", " + std::to_string(behind.size()) +
                   " bytes behind");
      MessageScanner scanner(kMax);
      ScanResult first;
      scan_all(scanner, header('Q', length) + behind, &first);
      ASSERT_NE(first.status, ScanStatus::ok);
      EXPECT_EQ(first.consumed, 5u);
      // The stream stopped inside a message: a client's server must not be taken for clean.
      EXPECT_FALSE(scanner.at_boundary());
      EXPECT_EQ(scanner.pending_header_bytes(), 5u);
      // Rescanning must neither report the rejected header nor skip a wrapped length.
      ScanResult again;
      EXPECT_TRUE(scan_all(scanner, header('Z', 5) + "I", &again).empty());
      EXPECT_EQ(again.status, first.status);
      EXPECT_EQ(again.consumed, 0u);
      scanner.reset();
      EXPECT_TRUE(scanner.at_boundary());
      const auto events = scan_all(scanner, header('Z', 5) + "I", &again);
      EXPECT_EQ(again.status, ScanStatus::ok);
      ASSERT_EQ(events.size(), 1u);
      EXPECT_EQ(events[0].first_byte, 'I');
    }
  }
}

// ---------------------------------------------------------------- boundary state

TEST(ProtocolMessageScanner, AtBoundaryTracksPartialHeaders) {
  MessageScanner scanner(kMax);
  EXPECT_TRUE(scanner.at_boundary());
  const std::string message = header('Q', 9) + "BEGIN";
  for (std::size_t i = 0; i < message.size(); ++i) {
    scan_all(scanner, message.substr(i, 1));
    EXPECT_EQ(scanner.at_boundary(), i + 1 == message.size()) << i;
  }
}

TEST(ProtocolMessageScanner, ResetDropsPartialMessage) {
  for (std::size_t partial : {2u, 5u, 7u}) {  // inside header, before first byte, inside body
    MessageScanner scanner(kMax);
    scan_all(scanner, (header('D', 14) + "0123456789").substr(0, partial));
    EXPECT_FALSE(scanner.at_boundary());
    scanner.reset();
    EXPECT_TRUE(scanner.at_boundary());
    const auto events = scan_all(scanner, header('X', 4) + header('Z', 5) + "I");
    ASSERT_EQ(events.size(), 2u) << partial;
    EXPECT_EQ(events[0].type, 'X');
    EXPECT_EQ(events[0].end, 5u);
    EXPECT_EQ(events[1].first_byte, 'I');
    EXPECT_EQ(events[1].end, 11u);
  }
}

}  // namespace
}  // namespace sluice::protocol
