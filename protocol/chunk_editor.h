// Rewrites a chunk of forwarded bytes in one left-to-right pass: ranges pass,
// are dropped, or have bytes inserted before them. Nothing is copied until the
// first edit, so an untouched chunk goes out as it came in. A header cut by the
// end of a chunk is held back across chunks until its message's type is known.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "protocol/wire.h"

namespace sluice::protocol {

class ChunkEditor {
 public:
  void begin(Bytes chunk) {
    chunk_ = chunk;
    done_until_ = 0;
    edited_ = false;
    out_.clear();
  }
  void pass_to(std::size_t offset) {
    if (edited_) out_.append(text(done_until_, offset));
    done_until_ = offset;
  }
  void drop_to(std::size_t offset) {
    materialize();
    done_until_ = offset;
  }
  void insert(std::string_view bytes) {
    if (bytes.empty()) return;
    materialize();
    out_.append(bytes);
  }
  // Ends the chunk: everything up to `end` passes, except the first bytes of a
  // header still incomplete there (`partial_header_bytes` as the scanner counts
  // them, earlier chunks' included), which are held. Returns the output, valid
  // until release_memory() or the next begin.
  Bytes finish(std::size_t end, std::size_t partial_header_bytes) {
    const std::size_t in_this_chunk =
        partial_header_bytes > held_.size() ? partial_header_bytes - held_.size() : 0;
    const std::size_t keep_from = end - std::min(in_this_chunk, end);
    pass_to(keep_from);
    held_.append(text(keep_from, end));
    return edited_ ? as_bytes(out_) : chunk_.first(keep_from);
  }
  // Bytes held from earlier chunks: the start of the message reported next.
  [[nodiscard]] const std::string& held() const { return held_; }
  // That message's type is known: its held start goes out first, or is dropped.
  void release_held(bool pass) {
    if (pass) insert(held_);
    held_.clear();
  }
  [[nodiscard]] std::string_view text(std::size_t from, std::size_t to) const {
    return {reinterpret_cast<const char*>(chunk_.data()) + from, to - from};
  }
  [[nodiscard]] Bytes bytes(std::size_t from, std::size_t to) const {
    return chunk_.subspan(from, to - from);
  }
  [[nodiscard]] std::size_t size() const { return chunk_.size(); }
  // Bytes of output so far: finish()'s result begins with them.
  [[nodiscard]] std::size_t output_size() const { return edited_ ? out_.size() : done_until_; }
  // A large edit's buffer is not kept for the connection's lifetime.
  void release_memory() {
    if (out_.capacity() > kKeptCapacity) std::string().swap(out_);
  }

 private:
  static constexpr std::size_t kKeptCapacity = 4096;

  void materialize() {
    if (edited_) return;
    out_.assign(text(0, done_until_));
    edited_ = true;
  }

  Bytes chunk_;
  std::size_t done_until_ = 0;
  bool edited_ = false;
  std::string out_;
  std::string held_;
};

}  // namespace sluice::protocol
