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

void BatchReplay::start(StatementPtr statement) {
  state_ = State::recording;
  statement_ = std::move(statement);
  if (bytes_.capacity() > kKeptCapacity) std::string().swap(bytes_);
  bytes_.clear();
}

void BatchReplay::add(char type, std::string_view bytes) {
  if (type == 'Q' || type == 'F' || type == 'd' || type == 'c' || type == 'f' ||
      bytes_.size() + bytes.size() > kMaxBytes)
    return stop();
  bytes_ += bytes;
  if (type == 'S') state_ = State::complete;
}

void BatchReplay::stop() {
  state_ = State::off;
  statement_.reset();
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
  if (head.request == 'B')
    return head.detailed && head.kind == PendingKind::forwarded && details_.front().statement;
  return head.request == 'E' && last_bound_ != nullptr;
}

void ReplyLedger::note_completed(const Slot& head) {
  if (head.request == 'B') last_bound_ = head.detailed ? std::move(details_.front().statement) : nullptr;
  batch_ran_ = batch_ran_ || (head.request != 'P' && head.request != 'D' && head.request != 'C');
}

void ReplyLedger::note_ready(char status) {
  ready_status_ = status;
  batch_ran_ = false;
  last_bound_.reset();
}

void ReplyLedger::gather_plan_error(const protocol::MessageEvent& event, std::string& shown) {
  const bool began_earlier = event.start == protocol::MessageEvent::kEarlier;
  plan_error_ = began_earlier ? editor_.held() : std::string();
  plan_error_ += editor_.text(began_earlier ? 0 : event.start, event.complete() ? event.end : editor_.size());
  gathering_plan_error_ = !event.complete();
  if (!gathering_plan_error_) settle_plan_error(shown);
}

// The whole error is here: a stale plan runs the batch again when that is
// safe; otherwise the client sees the error, and the server's copy goes.
void ReplyLedger::settle_plan_error(std::string& shown) {
  const auto error = protocol::read_error_fields(protocol::as_bytes(plan_error_));
  if (error && is_stale_plan_error(*error)) {
    const StatementPtr statement = front().request == 'B' ? details_.front().statement : last_bound_;
    if (front().request == 'B' && replay_batch(statement)) return plan_error_.clear();
    cache_.mark_stale(*statement);
  }
  shown = std::move(plan_error_);
  plan_error_.clear();
  on_error_response();
}

// Safe when nothing of the batch has had an effect: no transaction was open
// before it, no Bind or Execute of it completed, and the client has sent
// nothing after its Sync (the batch runs again before anything else). The
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
  const Slot added[] = {{'S', PendingKind::retried, false},
                        {'C', PendingKind::injected_close, true},
                        {'P', PendingKind::injected_parse, true}};
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

void ReplyLedger::reset_retry() {
  replay_.stop();
  replay_out_.clear();
  ready_status_ = 'I';
  batch_ran_ = false;
  last_bound_.reset();
  std::string().swap(plan_error_);
  gathering_plan_error_ = false;
}

}  // namespace sluice::pool
