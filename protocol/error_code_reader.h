// The SQLSTATE of an ErrorResponse that is forwarded as it arrives, possibly over several reads:
// only the body's first bytes are kept (PostgreSQL sends the code among the first fields), and only
// when the code is not whole in the first read. Pure: no I/O.
#pragma once

#include <cstdint>
#include <string>

#include "protocol/wire.h"

namespace sluice::protocol {

class ErrorCodeReader {
 public:
  // A new ErrorResponse: the part of its body in this read, and how many body bytes are still to
  // come. True when its code is known (code()); else feed() the next reads.
  bool start(Bytes body_part, std::uint64_t body_left);
  // The next read: its first bytes continue the body (pending() of them at most). True when the code
  // became known with them.
  bool feed(Bytes chunk);
  // Body bytes still to come of an error whose code is not known yet.
  [[nodiscard]] std::uint64_t pending() const { return body_left_; }
  // Its SQLSTATE; empty when the error carried none that could be read.
  [[nodiscard]] const std::string& code() const { return code_; }

 private:
  // Enough for the fields PostgreSQL sends before the code (S and V, a localized severity included).
  static constexpr std::size_t kKeptBytes = 256;
  // True when `fields` (a body's first bytes) settle the code: found, or not there.
  bool read(std::string_view fields, bool whole);

  std::uint64_t body_left_ = 0;  // first: read for every reply (pending())
  std::string kept_;
  std::string code_;
};

}  // namespace sluice::protocol
