// The replies a server owes, in order, while statement tracking rewrites a
// client's extended-protocol traffic. Some requests are sluiced's own (a Parse
// so a statement exists here, a Close for an evicted one) and their replies
// must not reach the client; some client requests are answered by sluiced (a
// Close) and their replies
// must reach the client exactly where PostgreSQL would have put them.
// PostgreSQL's rule that an error skips every request up to the next Sync is
// followed here, so the statement caches stay true to the server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pool/prepared_statements.h"
#include "pool/statement_retry.h"
#include "protocol/chunk_editor.h"
#include "protocol/error_fields.h"
#include "protocol/message_scanner.h"

namespace sluice::pool {

enum class PendingKind : std::uint8_t {
  forwarded,       // the client's request: its replies pass
  client_parse,    // the client's Parse under the server's name: passes; failing forgets the name
  injected_parse,  // sluiced's Parse: ParseComplete dropped, an error passes (it stands for the client's)
  injected_close,  // sluiced's Close of an evicted statement: CloseComplete dropped
  answered,        // the client's Close answered by sluiced: `reply` goes in its place
  refused,         // a request sent to fail: its ErrorResponse is replaced by `reply`
  // sluiced's own Query, sent alone with the client's messages held behind it
  // (its settings' restore, a look at its backend state): every reply but a
  // notification is kept from the client and gathered (see take_own_replies).
  own_query,
  // The rest of a batch that met a stale plan and runs again (statement_retry.h):
  // every reply dropped up to its ReadyForQuery.
  retried,
};

struct PendingReply {
  PendingKind kind = PendingKind::forwarded;
  char request = 0;  // the frontend message type the reply answers
  StatementPtr statement;
  // The client's name for the statement, undone if PostgreSQL would not have
  // kept the request: a failed Parse forgets it, a skipped Close restores it.
  std::weak_ptr<ClientStatements> client;
  std::string client_name;
  bool restores_name = false;  // a Close or DEALLOCATE: undo puts the name back
  std::string reply;           // answered / refused
};

inline PendingReply pending_reply(PendingKind kind, char request, StatementPtr statement = {},
                                  std::string reply = {}) {
  PendingReply entry;
  entry.kind = kind;
  entry.request = request;
  entry.statement = std::move(statement);
  entry.reply = std::move(reply);
  return entry;
}

class ReplyLedger {
 public:
  explicit ReplyLedger(ServerStatementCache& cache) : cache_(cache) {}

  // Requests in the order they go to the server. An `answered` entry with
  // nothing owed before it is ready at once: see take_ready().
  void expect(PendingReply entry);
  // The client's own request of this type (nothing is owed for Flush or COPY data).
  void expect_forwarded(char request);
  // The client's Bind of a tracked statement, kept to tell a stale plan.
  void expect_bind(StatementPtr statement);
  // Replies that became due outside a server read; empty when none.
  std::string take_ready();

  // One chunk of server bytes: begin, one call per message the scanner
  // reports, finish. finish returns what the client must see (valid until the
  // next begin_chunk); a partly received header is held back until its type
  // is known.
  void begin_chunk(protocol::Bytes chunk);
  // True when the message passes to the client as the server sent it.
  bool on_message(const protocol::MessageEvent& event) {
    if (passes_untouched(event)) {
      editor_.pass_to(event.end);
      return true;
    }
    return account_for(event);
  }
  protocol::Bytes finish_chunk(std::size_t partial_header_bytes);
  // ErrorResponses the ledger itself put in what the client sees (a refused request's answer, an
  // error it held and then showed, a reworded cancel), by SQLSTATE ("" when unreadable): /metrics
  // counts them, and the server's errors only when on_message passed them.
  [[nodiscard]] bool has_made_errors() const { return !made_errors_.empty(); }
  std::vector<std::string> take_made_errors();
  // query_timeout_ms fired: the next ErrorResponse with SQLSTATE 57014 (the cancel's) reaches the
  // client as `message` and `detail`, so that it says what cancelled the query; until the scope ends.
  void reword_next_cancel(std::string message, std::string detail) {
    reword_cancel_ = {std::move(message), std::move(detail)};
  }
  // Nothing runs any more: a cancel that comes now cancels nothing (PostgreSQL ignores it).
  void forget_rewording() {
    if (!reword_cancel_.message.empty()) [[unlikely]]
      reword_cancel_.clear();
  }

  [[nodiscard]] bool empty() const { return head_ == slots_.size(); }
  // Nothing is owed but an own_query's replies: no query of the client's runs.
  [[nodiscard]] bool owes_own_query_only() const {
    return head_ + 1 == slots_.size() && front().kind == PendingKind::own_query;
  }
  // The replies to an own_query, once its ReadyForQuery has come (nullopt until then).
  std::optional<std::string> take_own_replies();
  // The batch the client is sending, in case it must run again; and, after a
  // stale plan, what the server must be sent now (empty when nothing).
  [[nodiscard]] BatchReplay& batch_replay() { return replay_; }
  [[nodiscard]] bool has_replay() const { return !replay_out_.empty(); }
  std::string take_replay();
  // The scope ends: whatever is still owed is given up. If any of it could
  // have changed the server's statements, the cache starts a new generation.
  void abandon();

 private:
  // One per request owed; the details of those that are not plain forwards
  // queue apart, so a plain one costs two bytes and no allocation.
  struct Slot {
    char request;
    PendingKind kind;
    bool detailed;       // its PendingReply is at the head of details_ when it is
    bool bound = false;  // a Bind of a tracked statement: at the head of bound_
  };

  [[nodiscard]] const Slot& front() const { return slots_[head_]; }
  // The message lies whole in this chunk and a reply is owed: what the short ways below ask first.
  [[nodiscard]] bool whole_and_owed(const protocol::MessageEvent& event) const {
    return event.complete() && event.start != protocol::MessageEvent::kEarlier && !empty();
  }
  // A message that settles nothing owed, most of what servers send: whole in this chunk, while the
  // head is a plain forward of the client's, a DataRow (which completes no request), or under a
  // simple Query anything but its ErrorResponse or ReadyForQuery (which alone settle it: completes()
  // and ends_with_ready() in the .cpp). account_for would leave everything as it is; the check is
  // inline, in the server's read.
  [[nodiscard]] bool passes_untouched(const protocol::MessageEvent& event) const {
    if (!whole_and_owed(event)) return false;
    const Slot& head = front();
    return head.kind == PendingKind::forwarded &&
           (event.type == 'D' || (head.request == 'Q' && event.type != 'E' && event.type != 'Z'));
  }
  // Every other message: what it settles, and whether it passes.
  bool account_for(const protocol::MessageEvent& event);
  // The reply, whole in this chunk, that completes the client's own request at the head, with no
  // answer of sluiced's due after it; and all account_for has to do for it. Inline: defined and used
  // in reply_ledger.cpp alone.
  [[nodiscard]] inline bool completes_forward(const protocol::MessageEvent& event) const;
  inline void settle_forward(const protocol::MessageEvent& event);
  void pop();
  void undo_and_pop();
  void undo(const PendingReply& entry);
  void skip_until_sync();
  void take_due_answers(std::string& due);
  void on_error_response();
  // A reply to the own_query at the head: true when it is dropped.
  bool on_own_reply(const protocol::MessageEvent& event, std::string& after);
  // Its ReadyForQuery is whole.
  void finish_own_query(std::string& after);
  // Stale plans (statement_retry.cpp; the per-reply hooks beside abandon): an
  // error for the Bind of a statement sluiced keeps on servers, or for an
  // Execute of its portal, is read whole before anyone sees it.
  [[nodiscard]] bool may_be_stale_plan(const Slot& head) const;
  void note_completed(const Slot& head);
  void note_ready(char status);
  void settle_plan_error(std::string& shown);
  // An error read whole before the client sees it: a possible stale plan, or a cancel to reword.
  void hold_error(const protocol::MessageEvent& event, bool reworded, std::string& shown);
  void settle_held_error(std::string& shown);
  void show_held_error(const std::optional<protocol::ErrorFields>& error, std::string& shown);
  void note_made_error(const std::string& error);
  bool replay_batch(const StatementPtr& statement);
  void reset_retry();

  struct Rewording {
    std::string message;  // empty: nothing to reword
    std::string detail;
    void clear() {
      message.clear();
      detail.clear();
    }
  };

  // First what every reply and every release reads (most of it to find that nothing unusual is
  // under way), on as few cache lines as it fits; then what only statements and errors use.
  ServerStatementCache& cache_;
  std::vector<Slot> slots_;  // a queue: [head_, size)
  std::size_t head_ = 0;
  // The message that continues past the chunk: bytes still to come, whether
  // they are dropped, and (after_carry_) what goes to the client after them.
  std::uint64_t carry_ = 0;
  bool carry_dropped_ = false;
  char ready_status_ = 'I';           // at the last ReadyForQuery
  bool batch_ran_ = false;            // since then a Bind completed, or a held copy was described
  bool skipping_until_sync_ = false;  // an error came before the client's Sync was sent
  // The own_query's reply (own_replies_) being gathered continues in the next chunk, that message
  // is its ReadyForQuery, and own_replies_ ends with that ReadyForQuery.
  bool gathering_own_ = false;
  bool own_ready_pending_ = false;
  bool own_done_ = false;
  bool gathering_held_error_ = false;
  bool held_for_rewording_ = false;
  StatementPtr last_bound_;  // this batch's last Bind: its portal's statement
  BatchReplay replay_;
  std::string ready_;        // answers due with nothing owed before them
  std::string own_replies_;  // the own_query's, gathered across chunks
  std::string replay_out_;   // for the server, sent after this chunk
  std::string held_error_;   // an error that may be a stale plan, or a cancel to reword, gathered
  Rewording reword_cancel_;
  std::vector<std::string> made_errors_;
  protocol::ChunkEditor editor_;  // the chunk being filtered

  std::deque<PendingReply> details_;
  std::deque<StatementPtr> bound_;  // the statements of bound slots, in order
  std::string after_carry_;
};

}  // namespace sluice::pool
