#include "protocol/error_code_reader.h"

#include <algorithm>

namespace sluice::protocol {
namespace {

std::string_view text_of(Bytes bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

}  // namespace

bool ErrorCodeReader::start(Bytes body_part, std::uint64_t body_left) {
  kept_.clear();
  code_.clear();
  body_left_ = 0;
  if (read(text_of(body_part), body_left == 0)) return true;
  kept_.assign(text_of(body_part.first(std::min(body_part.size(), kKeptBytes))));
  body_left_ = body_left;
  return false;
}

bool ErrorCodeReader::feed(Bytes chunk) {
  const auto part = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, chunk.size()));
  body_left_ -= part;
  kept_.append(text_of(chunk.first(std::min(part, kKeptBytes - std::min(kKeptBytes, kept_.size())))));
  if (!read(kept_, body_left_ == 0 || kept_.size() >= kKeptBytes)) return false;
  body_left_ = 0;
  kept_.clear();
  return true;
}

// Fields: a type byte and a NUL-terminated value each, a NUL after the last.
bool ErrorCodeReader::read(std::string_view fields, bool whole) {
  std::size_t at = 0;
  while (at < fields.size()) {
    const char type = fields[at];
    if (type == '\0') return true;  // the end: no code
    const std::size_t end = fields.find('\0', at + 1);
    if (end == std::string_view::npos) break;
    if (type == 'C') {
      code_.assign(fields.substr(at + 1, end - at - 1));
      return true;
    }
    at = end + 1;
  }
  return whole;
}

}  // namespace sluice::protocol
