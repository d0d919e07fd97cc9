// query_timeout_ms and transaction_timeout_ms: a client's request or transaction that runs too long
// (README "Limits against PgBouncer's names").
#include <algorithm>

#include "common/log.h"
#include "daemon/worker.h"
#include "frontend/client_session.h"
#include "protocol/sqlstate.h"

namespace sluice::frontend {

// query_timeout_ms cancels the request, as PostgreSQL's statement_timeout does: the client gets
// 57014 worded after PostgreSQL's "canceling statement due to statement timeout", naming sluiced's
// query timeout, and keeps its session (a transaction it had open is failed, as there), and the
// server stays its own. Only a request the cancel did not stop within another query_timeout_ms
// ends the scope (as cancel: sluiced cancels again, drains and rolls back) and the client.
// transaction_timeout_ms ends the scope (rollback, or cancel when a query runs) and the client with
// PostgreSQL 17's FATAL 25P04.
bool ClientSession::check_running_limits(std::uint64_t now_ms) {
  if (state_ != ClientState::active || !scope_) return false;
  const auto& settings = pool_->settings();
  pool::ServerConnection& server = scope_.server();
  note_server_progress(server, now_ms);
  const bool running = server.busy() && own_query_ == OwnQuery::none;
  if (settings.query_timeout_ms > 0 && running) {
    const auto limit = static_cast<std::uint64_t>(settings.query_timeout_ms);
    const std::uint64_t elapsed = now_ms - request_started_ms_;
    if (!query_timeout_fired_ && elapsed >= limit) {
      query_timeout_fired_ = true;
      pool_->note_query_timeout();
      log::info("client ", id_, ": query_timeout_ms (", limit, ") passed: its request on server ",
                server.id(), " is cancelled");
      server.cancel_for_query_timeout(
          "canceling statement due to query timeout",
          "The statement ran longer than sluiced's query_timeout_ms (" + std::to_string(limit) + " ms).");
    } else if (query_timeout_fired_ && elapsed >= 2 * limit) {
      log::warning("client ", id_, ": its request on server ", server.id(),
                   " still runs a query_timeout_ms after its cancel: its scope is ended");
      scope_.end("query_timeout: the cancel did not stop the request", !scanner_.at_boundary());
      fail(sqlstate::kQueryCanceled, "terminating connection: query_timeout (" + std::to_string(limit) +
                                         " ms) passed and the cancel did not stop the query");
      return true;
    }
  }
  const bool in_transaction = server.busy() || server.transaction_status() != 'I';
  if (settings.transaction_timeout_ms > 0 && in_transaction &&
      now_ms - transaction_started_ms_ >= static_cast<std::uint64_t>(settings.transaction_timeout_ms)) {
    pool_->note_transaction_timeout();
    log::info("client ", id_, ": transaction_timeout_ms (", settings.transaction_timeout_ms,
              ") passed: its transaction is ended and the client closed");
    scope_.end("transaction_timeout", !scanner_.at_boundary());
    fail(sqlstate::kTransactionTimeout, "terminating connection due to transaction timeout");
    return true;
  }
  return false;
}

void ClientSession::note_server_progress(const pool::ServerConnection& server, std::uint64_t now_ms) {
  const ServerProgress now{&server, server.requests_answered(), server.transactions_ended(), now_ms};
  if (now.server == limits_seen_.server) {
    if (now.requests_answered != limits_seen_.requests_answered) {
      request_started_ms_ = std::max(request_started_ms_, limits_seen_.seen_at_ms);
      query_timeout_fired_ = false;
    }
    if (now.transactions_ended != limits_seen_.transactions_ended)
      transaction_started_ms_ = std::max(transaction_started_ms_, limits_seen_.seen_at_ms);
  }
  limits_seen_ = now;
}

}  // namespace sluice::frontend
