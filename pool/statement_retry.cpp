#include "pool/statement_retry.h"

#include <utility>

#include "pool/reply_ledger.h"
#include "protocol/extended_query.h"
#include "protocol/sqlstate.h"

namespace sluice::pool {

bool is_stale_plan_error(const protocol::ErrorFields& error) {
  if (error.sqlstate == sqlstate::kFeatureNotSupported)
    return error.message == "cached plan must not change result type";
  return error.sqlstate == sqlstate::kInternalError && error.message.starts_with("cache lookup failed for ");
}

std::string BatchReplay::take(const PreparedStatement& statement) {
  std::string replay;
  if (state_ != State::complete || statement_.get() != &statement) return replay;
  // The batch begins with the Bind: the server's name for the statement is in it.
  const auto bind = protocol::read_bind(protocol::as_bytes(bytes_));
  if (bind) {
    protocol::append_target(replay, 'C', 'S', bind->statement, {});
    protocol::append_parse(replay, bind->statement, {}, statement.definition);
    replay += bytes_;
  }
  stop();
  return replay;
}

// The ReplyLedger's side: which errors may be stale plans, and what follows one.

bool ReplyLedger::may_be_stale_plan(const Slot& head) const {
  return head.bound || (head.request == 'E' && last_bound_ != nullptr);
}

// The whole error is here: a stale plan runs the batch again when that is
// safe; otherwise the client sees the error, and the server's copy goes.
void ReplyLedger::settle_plan_error(std::string& shown) {
  const auto error = protocol::read_error_fields(protocol::as_bytes(held_error_));
  if (error && is_stale_plan_error(*error)) {
    const StatementPtr statement = front().bound ? bound_.front() : last_bound_;
    if (front().bound && replay_batch(statement)) return held_error_.clear();
    cache_.mark_stale(*statement);
  }
  show_held_error(error, shown);
  on_error_response();
}

// Safe when nothing of the batch has had an effect: no transaction was open
// before it, no Bind of it completed (so no Execute either), the client was
// not shown a held copy's description, the recording begins at this Bind, and
// the client has sent nothing after its Sync (the batch runs again before
// anything else). The
// server skips the rest of the batch up to the Sync; then the statement is
// closed and parsed anew, and the batch's requests, still owed, run again.
bool ReplyLedger::replay_batch(const StatementPtr& statement) {
  if (ready_status_ != 'I' || batch_ran_) return false;
  std::size_t sync = head_;
  while (sync < slots_.size() && slots_[sync].request != 'S') ++sync;
  if (sync + 1 != slots_.size()) return false;
  std::string replay = replay_.take(*statement);
  if (replay.empty()) return false;
  replay_out_ += replay;
  const Slot added[] = {{'S', PendingKind::retried, false, false},
                        {'C', PendingKind::injected_close, true, false},
                        {'P', PendingKind::injected_parse, true, false}};
  slots_.insert(slots_.begin() + static_cast<std::ptrdiff_t>(head_), std::begin(added), std::end(added));
  details_.push_front(pending_reply(PendingKind::injected_parse, 'P', statement));
  details_.push_front(pending_reply(PendingKind::injected_close, 'C', statement));
  return true;
}

std::string ReplyLedger::take_replay() {
  std::string replay;
  replay.swap(replay_out_);
  return replay;
}

}  // namespace sluice::pool
