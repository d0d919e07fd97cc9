// Stale plans. A server keeps a prepared statement planned against the
// schema of its Parse; after an ALTER TABLE or a type dropped and made again,
// PostgreSQL refuses to Bind it ("cached plan must not change result type",
// "cache lookup failed for type N"). A client connected directly would have
// parsed it after the change; through sluiced it may meet a copy another
// client, or sluiced, parsed earlier. So the statement is dropped from that
// server, and a batch whose first effect was that Bind runs again, the
// statement parsed anew first, without the client seeing the error.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "pool/prepared_statements.h"
#include "protocol/error_fields.h"

namespace sluice::pool {

// PostgreSQL's errors for a statement whose plan the schema left behind.
bool is_stale_plan_error(const protocol::ErrorFields& error);

// What may run again: the client's batch as it went to the server, from its
// first Bind of a statement the server already held through its Sync. The
// ReplyLedger decides whether running it again is safe.
class BatchReplay {
 public:
  // Inline: they run for every batch.
  void start(StatementPtr statement) {
    state_ = State::recording;
    statement_ = std::move(statement);
    if (bytes_.capacity() > kKeptCapacity) std::string().swap(bytes_);
    bytes_.clear();
  }
  // The batch's next bytes, as sent; complete once its Sync is in.
  void add(std::string_view bytes) {
    if (state_ != State::recording) return;
    if (bytes_.size() + bytes.size() > kMaxBytes) return stop();
    bytes_ += bytes;
  }
  void complete() {
    if (state_ == State::recording) state_ = State::complete;
  }
  void stop() {
    state_ = State::off;
    statement_.reset();
  }
  [[nodiscard]] bool recording() const { return state_ == State::recording; }
  [[nodiscard]] bool off() const { return state_ == State::off; }
  // The statement closed and parsed anew under its name, then the batch; empty
  // unless a whole batch began with a Bind of `statement`. Once.
  std::string take(const PreparedStatement& statement);

 private:
  enum class State : unsigned char { off, recording, complete };
  // A larger batch is not kept (and not run again).
  static constexpr std::size_t kMaxBytes = std::size_t{64} * 1024;
  static constexpr std::size_t kKeptCapacity = 4096;

  State state_ = State::off;
  StatementPtr statement_;
  std::string bytes_;
};

}  // namespace sluice::pool
