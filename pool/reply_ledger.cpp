#include "pool/reply_ledger.h"

#include <algorithm>

#include "protocol/backend_messages.h"
#include "protocol/error_fields.h"
#include "protocol/sqlstate.h"

namespace sluice::pool {
namespace {

// Sync, a simple Query and a FunctionCall each end in ReadyForQuery, even
// after an error.
bool ends_with_ready(char request) { return request == 'S' || request == 'Q' || request == 'F'; }

// The reply that completes a request (ErrorResponse aside).
bool completes(char request, char reply) {
  switch (request) {
    case 'P':
      return reply == '1';
    case 'B':
      return reply == '2';
    case 'D':
      return reply == 'T' || reply == 'n';
    case 'E':
      return reply == 'C' || reply == 'I' || reply == 's';
    case 'C':
      return reply == '3';
    default:
      return reply == 'Z';
  }
}

// NoticeResponse, ParameterStatus and NotificationResponse may come at any time.
bool is_asynchronous(char reply) { return reply == 'N' || reply == 'S' || reply == 'A'; }

bool has_reply(char request) {
  switch (request) {
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
    case 'S':
    case 'Q':
    case 'F':
      return true;
    default:
      return false;
  }
}

}  // namespace

void ReplyLedger::expect(PendingReply entry) {
  // An own query goes out alone to an idle server: nothing before it is skipped.
  if (entry.kind == PendingKind::own_query) skipping_until_sync_ = false;
  if (skipping_until_sync_) {
    if (entry.request != 'S') return undo(entry);  // the server will skip it too
    skipping_until_sync_ = false;
  }
  if (entry.kind == PendingKind::answered && empty()) {
    // Nothing owed before it: due now, or right after a message in flight.
    (carry_ > 0 ? after_carry_ : ready_) += entry.reply;
    return;
  }
  slots_.push_back({entry.request, entry.kind, /*detailed=*/true});
  details_.push_back(std::move(entry));
}

void ReplyLedger::expect_forwarded(char request) {
  if (!has_reply(request)) return;
  if (skipping_until_sync_ && request != 'S') return;
  skipping_until_sync_ = false;
  slots_.push_back({request, PendingKind::forwarded, /*detailed=*/false});
}

void ReplyLedger::expect_bind(StatementPtr statement) {
  if (skipping_until_sync_) return;  // the server will skip it too
  slots_.push_back({'B', PendingKind::forwarded, /*detailed=*/false, /*bound=*/true});
  bound_.push_back(std::move(statement));
}

std::string ReplyLedger::take_ready() {
  std::string ready;
  ready.swap(ready_);
  return ready;
}

void ReplyLedger::pop() {
  if (slots_[head_].detailed) details_.pop_front();
  if (slots_[head_].bound) bound_.pop_front();
  if (++head_ == slots_.size()) {
    slots_.clear();
    head_ = 0;
  }
}

void ReplyLedger::undo_and_pop() {
  if (front().detailed) undo(details_.front());
  pop();
}

// PostgreSQL did not do the request (it failed, or an earlier error skipped it).
void ReplyLedger::undo(const PendingReply& entry) {
  switch (entry.kind) {
    case PendingKind::injected_parse:
    case PendingKind::client_parse:
      cache_.remove(*entry.statement);
      break;
    case PendingKind::injected_close:
      // The server still holds it, and putting it back could evict another
      // statement nobody would close: start over under new names instead.
      cache_.start_new_generation();
      break;
    default:
      break;
  }
  const auto client = entry.client.lock();
  if (!client || entry.client_name.empty()) return;
  if (entry.restores_name) {
    if (entry.statement) client->add(entry.client_name, entry.statement);
  } else {
    const StatementPtr* named = client->find(entry.client_name);
    if (named != nullptr && *named == entry.statement) client->remove(entry.client_name);
  }
}

void ReplyLedger::skip_until_sync() {
  while (!empty() && front().request != 'S') undo_and_pop();
  if (empty()) skipping_until_sync_ = true;
}

// Answers whose turn has come: every reply owed before them has been seen.
void ReplyLedger::take_due_answers(std::string& due) {
  while (!empty() && front().kind == PendingKind::answered) {
    due += details_.front().reply;
    pop();
  }
}

// Stale plans (statement_retry.cpp): what a batch has done so far.
void ReplyLedger::note_ready(char status) {
  ready_status_ = status;
  batch_ran_ = false;
  last_bound_.reset();
}

// A Bind completed, or the client was shown a description of a copy the
// server held: the batch is not run again.
void ReplyLedger::note_completed(const Slot& head) {
  if (head.request == 'B') {
    last_bound_ = head.bound ? std::move(bound_.front()) : nullptr;
    batch_ran_ = true;
  } else if (head.request == 'D' && head.detailed && details_.front().statement) {
    batch_ran_ = true;
  }
}

void ReplyLedger::reset_retry() {
  replay_.stop();
  replay_out_.clear();
  last_bound_.reset();
  held_error_.clear();
  gathering_held_error_ = false;
}

void ReplyLedger::abandon() {
  ready_status_ = 'I';
  batch_ran_ = false;
  skipping_until_sync_ = false;  // the teardown's own Sync ends the skip
  // The common release: no batch kept, nothing met a stale plan.
  if (!replay_.off() || !replay_out_.empty() || last_bound_ || !held_error_.empty() || gathering_held_error_)
    reset_retry();
  reword_cancel_.clear();
  made_errors_.clear();
  if (empty() && carry_ == 0 && editor_.held().empty() && ready_.empty() && own_replies_.empty()) {
    return editor_.release_memory();
  }
  bool touched_statements = false;
  for (std::size_t i = head_; i < slots_.size(); ++i) {
    const PendingKind kind = slots_[i].kind;
    touched_statements = touched_statements || kind == PendingKind::injected_parse ||
                         kind == PendingKind::client_parse || kind == PendingKind::injected_close;
  }
  if (touched_statements) cache_.start_new_generation();
  slots_.clear();
  details_.clear();
  bound_.clear();
  head_ = 0;
  ready_.clear();
  std::string().swap(own_replies_);
  gathering_own_ = false;
  own_ready_pending_ = false;
  own_done_ = false;
  editor_.release_held(false);
  carry_ = 0;
  after_carry_.clear();
  editor_.release_memory();
}

void ReplyLedger::begin_chunk(protocol::Bytes chunk) {
  editor_.begin(chunk);
  if (carry_ == 0) return;
  const std::size_t rest = static_cast<std::size_t>(std::min<std::uint64_t>(carry_, chunk.size()));
  carry_ -= rest;
  std::string after_own;
  if (gathering_own_) {
    own_replies_ += editor_.text(0, rest);
    gathering_own_ = carry_ > 0;
    if (!gathering_own_ && own_ready_pending_) finish_own_query(after_own);
  }
  const bool settles_held_error = gathering_held_error_ && carry_ == 0;
  if (gathering_held_error_) {
    held_error_ += editor_.text(0, rest);
    gathering_held_error_ = carry_ > 0;
  }
  if (carry_dropped_) {
    editor_.drop_to(rest);
  } else {
    editor_.pass_to(rest);
  }
  if (settles_held_error) {
    std::string shown;
    settle_held_error(shown);
    editor_.insert(shown);
  }
  if (carry_ == 0) {
    editor_.insert(after_carry_);
    after_carry_.clear();
  }
  editor_.insert(after_own);
}

void ReplyLedger::on_error_response() {
  if (ends_with_ready(front().request)) return;  // its ReadyForQuery still comes
  undo_and_pop();
  skip_until_sync();
}

// An error read whole before anyone sees it: a possible stale plan, or the error a query_timeout's
// cancel brought.
void ReplyLedger::hold_error(const protocol::MessageEvent& event, bool reworded, std::string& shown) {
  const bool began_earlier = event.start == protocol::MessageEvent::kEarlier;
  held_error_ = began_earlier ? editor_.held() : std::string();
  held_error_ += editor_.text(began_earlier ? 0 : event.start, event.complete() ? event.end : editor_.size());
  gathering_held_error_ = !event.complete();
  held_for_rewording_ = reworded;
  if (!gathering_held_error_) settle_held_error(shown);
}

void ReplyLedger::settle_held_error(std::string& shown) {
  if (!held_for_rewording_) return settle_plan_error(shown);
  show_held_error(protocol::read_error_fields(protocol::as_bytes(held_error_)), shown);
}

// The held error goes to the client: reworded when it is the cancel a query_timeout sent.
void ReplyLedger::show_held_error(const std::optional<protocol::ErrorFields>& error, std::string& shown) {
  if (error && error->sqlstate == sqlstate::kQueryCanceled && !reword_cancel_.message.empty()) {
    protocol::append_error_response(shown, protocol::Severity::error, sqlstate::kQueryCanceled,
                                    reword_cancel_.message, reword_cancel_.detail);
    reword_cancel_.clear();
  } else {
    shown = std::move(held_error_);
  }
  held_error_.clear();
  note_made_error(shown);
}

void ReplyLedger::note_made_error(const std::string& error) {
  if (error.empty()) return;
  const auto fields = protocol::read_error_fields(protocol::as_bytes(error));
  made_errors_.push_back(fields ? fields->sqlstate : std::string());
}

std::vector<std::string> ReplyLedger::take_made_errors() {
  std::vector<std::string> errors;
  errors.swap(made_errors_);
  return errors;
}

bool ReplyLedger::on_own_reply(const protocol::MessageEvent& event, std::string& after) {
  if (event.type == 'A') return false;  // a listening client's notification is its own
  const bool began_earlier = event.start == protocol::MessageEvent::kEarlier;
  if (began_earlier) own_replies_ += editor_.held();
  own_replies_ +=
      editor_.text(began_earlier ? 0 : event.start, event.complete() ? event.end : editor_.size());
  gathering_own_ = !event.complete();
  own_ready_pending_ = event.type == 'Z';
  if (own_ready_pending_ && !gathering_own_) finish_own_query(after);
  return true;
}

void ReplyLedger::finish_own_query(std::string& after) {
  own_ready_pending_ = false;
  own_done_ = true;
  pop();
  take_due_answers(after);
}

std::optional<std::string> ReplyLedger::take_own_replies() {
  if (!own_done_) return std::nullopt;
  own_done_ = false;
  std::string replies;
  replies.swap(own_replies_);
  return replies;
}

// account_for's short way, for most replies of an extended-protocol transaction (the ParseComplete
// of an unnamed Parse, a BindComplete, a RowDescription, a CommandComplete, the ReadyForQuery after
// the client's Sync): the reply passes and pops the head, noting what it tells of the batch. Forced
// inline: as calls, the two saved -M extended 201 instructions per transaction instead of 286
// (callgrind).
[[gnu::always_inline]] inline bool ReplyLedger::completes_forward(const protocol::MessageEvent& event) const {
  if (!whole_and_owed(event)) return false;
  const Slot& head = front();
  if (head.kind != PendingKind::forwarded || !completes(head.request, event.type)) return false;
  return head_ + 1 == slots_.size() || slots_[head_ + 1].kind != PendingKind::answered;
}

[[gnu::always_inline]] inline void ReplyLedger::settle_forward(const protocol::MessageEvent& event) {
  if (event.type == 'Z') {
    note_ready(static_cast<char>(event.first_byte));
  } else {
    note_completed(front());
  }
  pop();
  editor_.pass_to(event.end);
}

bool ReplyLedger::account_for(const protocol::MessageEvent& event) {
  if (completes_forward(event)) {
    settle_forward(event);
    return true;
  }
  const bool began_earlier = event.start == protocol::MessageEvent::kEarlier;
  const std::size_t end = event.complete() ? event.end : editor_.size();
  const std::uint64_t seen = began_earlier ? editor_.held().size() + end : end - event.start;

  bool drop = false;
  std::string replacement;
  std::string after;
  if (event.type == 'Z') note_ready(static_cast<char>(event.first_byte));
  if (!empty() && front().kind == PendingKind::own_query) {
    drop = on_own_reply(event, after);
  } else if (!empty() && front().kind == PendingKind::retried) {
    drop = !is_asynchronous(event.type);
    if (event.type == 'Z') pop();
  } else if (!empty() && !is_asynchronous(event.type)) {
    const Slot head = front();
    if (event.type == 'E' && may_be_stale_plan(head)) {
      drop = true;
      hold_error(event, /*reworded=*/false, replacement);
    } else if (event.type == 'E') {
      if (head.kind == PendingKind::refused && !details_.front().reply.empty()) {
        replacement.swap(details_.front().reply);  // once: a later error of the same Query passes
        note_made_error(replacement);
        drop = true;
      }
      on_error_response();
    } else if (event.type == 'Z') {
      while (!empty() && !ends_with_ready(front().request)) undo_and_pop();
      if (!empty()) pop();
      take_due_answers(after);
    } else if (completes(head.request, event.type)) {
      drop = head.kind == PendingKind::injected_parse || head.kind == PendingKind::injected_close;
      if (head.request == 'B' || head.request == 'D') note_completed(head);
      pop();
      take_due_answers(after);
    }
  }

  if (event.type == 'E' && !drop && !reword_cancel_.message.empty()) [[unlikely]] {
    drop = true;
    hold_error(event, /*reworded=*/true, replacement);
  }
  if (began_earlier) editor_.release_held(!drop);
  if (drop) {
    editor_.insert(replacement);
    editor_.drop_to(end);
  } else {
    editor_.pass_to(end);
  }
  if (event.complete()) {
    editor_.insert(after);
    return !drop;
  }
  carry_ = event.length + std::uint64_t{1} - seen;
  carry_dropped_ = drop;
  after_carry_ = std::move(after);
  return !drop;
}

protocol::Bytes ReplyLedger::finish_chunk(std::size_t partial_header_bytes) {
  return editor_.finish(editor_.size(), partial_header_bytes);
}

}  // namespace sluice::pool
