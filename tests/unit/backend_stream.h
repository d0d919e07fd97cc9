// Backend messages as bytes, for the tests that feed a ReplyLedger a server's stream.
#pragma once

#include <cstdint>
#include <string>

#include "protocol/wire.h"

namespace sluice::pool {

inline std::string message(char type, const std::string& body = {}) {
  std::string out(1, type);
  protocol::append_u32(out, static_cast<std::uint32_t>(body.size() + 4));
  return out + body;
}

inline const std::string kParseComplete = message('1');
inline const std::string kBindComplete = message('2');
inline const std::string kCloseComplete = message('3');
inline const std::string kRow = message('D', std::string("\0\1\0\0\0\1x", 7));
inline const std::string kSelectDone = message('C', std::string("SELECT 1\0", 9));

}  // namespace sluice::pool
