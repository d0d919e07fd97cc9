// Follows message boundaries in a v3 byte stream that is forwarded as it
// arrives, so a pooler can route on message types without buffering whole
// messages. Pure: no I/O, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "protocol/wire.h"

namespace sluice::protocol {

// One message as seen by the scanner: reported as soon as its type, length and
// first body byte (if it has one) have passed.
struct MessageEvent {
  char type = 0;
  std::uint32_t length = 0;     // the wire length field: body plus the 4 length bytes
  std::uint8_t first_byte = 0;  // first body byte; 0 when the body is empty
  // Offset just past this message within the current chunk, or kContinues when
  // the message's remaining bytes arrive in later chunks.
  std::size_t end = 0;
  // Offset of the type byte within the current chunk, or kEarlier when the
  // message began in an earlier chunk.
  std::size_t start = 0;
  // Offset of the body's first byte within the current chunk (always in it: the event comes once
  // that byte has passed), or of the message's end when the body is empty.
  std::size_t body = 0;
  static constexpr std::size_t kContinues = static_cast<std::size_t>(-1);
  static constexpr std::size_t kEarlier = static_cast<std::size_t>(-1);
  [[nodiscard]] bool complete() const { return end != kContinues; }
};

enum class ScanStatus {
  ok,          // every byte of the chunk was consumed
  stopped,     // the visitor asked to stop; `consumed` says where
  bad_length,  // a length field below 4: protocol violation
  too_long,    // a length field above the configured maximum
};

struct ScanResult {
  ScanStatus status = ScanStatus::ok;
  std::size_t consumed = 0;  // bytes of the chunk processed
};

class MessageScanner {
 public:
  explicit MessageScanner(std::uint32_t max_length) : max_length_(max_length) {}

  // Feeds one chunk. For each message whose header (and first body byte) is
  // completed by this chunk, calls visit(const MessageEvent&) -> bool; returning
  // false stops the scan just past that message, which must then be complete.
  // After bad_length or too_long every later scan repeats it, consuming
  // nothing, until reset(): the stream has lost its framing.
  template <class Visitor>
  ScanResult scan(Bytes chunk, Visitor&& visit);

  // True when no message is partly scanned: the stream sits on a boundary.
  [[nodiscard]] bool at_boundary() const { return header_have_ == 0 && body_remaining_ == 0; }
  // Bytes of a header (type, length, first body byte) received so far but not
  // yet reported: a message whose type is known only once they are complete.
  [[nodiscard]] std::size_t pending_header_bytes() const { return header_have_; }
  void reset() {
    header_have_ = 0;
    header_want_ = kHeaderSize;
    body_remaining_ = 0;
    failed_ = ScanStatus::ok;
  }

 private:
  static constexpr std::size_t kHeaderSize = 5;  // type byte + length

  // A length field below 4 or above the maximum: the stream has lost its framing (sticky).
  bool rejects(std::uint32_t length) {
    if (length >= 4 && length <= max_length_) return false;
    failed_ = length < 4 ? ScanStatus::bad_length : ScanStatus::too_long;
    return true;
  }
  // Ends `event` `left` body bytes on from `from`, in this chunk of `size` bytes or in later ones;
  // the position the scan goes on from.
  std::size_t place_end(MessageEvent& event, std::uint64_t left, std::size_t from, std::size_t size) {
    if (left <= size - from) {
      event.end = from + static_cast<std::size_t>(left);
      return event.end;
    }
    body_remaining_ = left - (size - from);
    event.end = MessageEvent::kContinues;
    return size;
  }

  std::uint32_t max_length_;
  std::uint8_t header_[kHeaderSize + 1] = {};  // header plus first body byte
  std::size_t header_have_ = 0;
  std::size_t header_want_ = kHeaderSize;
  std::uint64_t body_remaining_ = 0;    // bytes still to skip after the captured header
  ScanStatus failed_ = ScanStatus::ok;  // sticky bad_length / too_long
};

template <class Visitor>
ScanResult MessageScanner::scan(Bytes chunk, Visitor&& visit) {
  // Without this, a rescan would report the rejected header as a message and
  // its length - 4 would wrap around.
  if (failed_ != ScanStatus::ok) return {failed_, 0};
  std::size_t pos = 0;
  const std::size_t size = chunk.size();
  while (pos < size) {
    if (body_remaining_ > 0) {
      const std::size_t skip = body_remaining_ < size - pos ? body_remaining_ : size - pos;
      pos += skip;
      body_remaining_ -= skip;
      continue;
    }
    // The usual case: the header, and the first body byte if there is a body, are all in this
    // chunk, read in place. Copied a byte at a time they cost about 150 instructions a message
    // (callgrind, `-M prepared`): a byte store may alias anything, so the compiler reloads the
    // scanner's state after each one.
    if (header_have_ == 0 && size - pos >= kHeaderSize) {
      const std::size_t start = pos;
      const std::uint32_t length = read_u32(chunk.data() + start + 1);
      if (length <= 4 || size - start > kHeaderSize) {
        if (rejects(length)) {
          header_have_ = kHeaderSize;  // the stream broke inside this message: not at a boundary
          return {failed_, start + kHeaderSize};
        }
        MessageEvent event;
        event.type = static_cast<char>(chunk[start]);
        event.length = length;
        event.first_byte = length > 4 ? chunk[start + kHeaderSize] : 0;
        event.start = start;
        event.body = start + kHeaderSize;
        pos = place_end(event, length - 4, event.body, size);
        if (!visit(event)) return {ScanStatus::stopped, pos};
        continue;
      }
    }
    // A header begun in an earlier chunk, or whose rest or first body byte is still to come: collected
    // byte by byte.
    const std::size_t start = header_have_ == 0 ? pos : MessageEvent::kEarlier;
    while (header_have_ < header_want_ && pos < size) {
      header_[header_have_++] = chunk[pos++];
      if (header_have_ == kHeaderSize) {
        const std::uint32_t length = read_u32(header_ + 1);
        if (rejects(length)) return {failed_, pos};
        header_want_ = length > 4 ? kHeaderSize + 1 : kHeaderSize;
      }
    }
    if (header_have_ < header_want_) break;

    MessageEvent event;
    event.type = static_cast<char>(header_[0]);
    event.length = read_u32(header_ + 1);
    event.first_byte = event.length > 4 ? header_[kHeaderSize] : 0;
    event.start = start;
    event.body = event.length > 4 ? pos - 1 : pos;
    const std::uint64_t left = event.length - 4 - (header_want_ - kHeaderSize);
    header_have_ = 0;
    header_want_ = kHeaderSize;
    pos = place_end(event, left, pos, size);
    if (!visit(event)) return {ScanStatus::stopped, pos};
  }
  return {ScanStatus::ok, pos};
}

}  // namespace sluice::protocol
