#include "frontend/statement_router.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "protocol/backend_messages.h"
#include "protocol/sql_commands.h"
#include "protocol/sqlstate.h"

namespace sluice::frontend {
namespace {

using pool::PendingKind;
using pool::PendingReply;

// The messages that may name a prepared statement, or (Query) prepare one in SQL.
bool is_read_whole(char type) {
  return type == 'P' || type == 'B' || type == 'D' || type == 'C' || type == 'Q';
}

// Requests sent so that PostgreSQL fails them: the ReplyLedger replaces their
// ErrorResponse with the one PostgreSQL would have sent the client, and the
// server skips what follows up to Sync (or aborts the transaction) as it would have.
constexpr std::string_view kFailingQuery = "sluice: refused";
constexpr char kFailingDefinitionText[] = "sluice: refused\0\0";  // query\0, no types
constexpr std::string_view kFailingDefinition{kFailingDefinitionText, sizeof kFailingDefinitionText};
constexpr std::string_view kMissingStatement = "sluice_missing_statement";
constexpr std::size_t kHeaderSize = 5;

std::string error_reply(const char* sqlstate, const std::string& message, std::string_view detail = {}) {
  std::string reply;
  protocol::append_error_response(reply, protocol::Severity::error, sqlstate, message, detail);
  return reply;
}

std::string missing_statement_error(std::string_view name) {
  return error_reply(sqlstate::kInvalidSqlStatementName,
                     "prepared statement \"" + std::string(name) + "\" does not exist");
}

std::string_view text_of(protocol::Bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

StatementRouter::StatementRouter(pool::StatementRegistry& registry,
                                 const pool::SettingFunctionWatch& functions,
                                 config::SessionStatePolicy session_state)
    : registry_(registry),
      functions_(functions),
      session_state_(session_state),
      client_(std::make_shared<pool::ClientStatements>()) {}

void StatementRouter::begin_chunk(protocol::Bytes chunk, pool::ServerConnection& server) {
  server_ = &server;
  editor_.begin(chunk);
  record_from_ = server.batch_replay().recording() ? 0 : kNotRecorded;
  record_to_ = kNotRecorded;
  if (carry_ == 0) return;
  const auto rest = static_cast<std::size_t>(std::min<std::uint64_t>(carry_, chunk.size()));
  carry_ -= rest;
  if (!carry_gathered_) return editor_.pass_to(rest);
  whole_.append(editor_.text(0, rest));
  editor_.drop_to(rest);
  if (carry_ == 0) process(protocol::as_bytes(whole_), /*in_place=*/false, rest);
}

void StatementRouter::on_message(const protocol::MessageEvent& event) {
  const bool began_earlier = event.start == protocol::MessageEvent::kEarlier;
  const std::size_t start = began_earlier ? 0 : event.start;
  const std::size_t end = event.complete() ? event.end : editor_.size();
  const std::uint64_t seen = (began_earlier ? editor_.held().size() : 0) + (end - start);
  carry_ = event.length + std::uint64_t{1} - seen;
  carry_gathered_ = is_read_whole(event.type);
  if (!carry_gathered_) {
    // A FunctionCall runs a function sluiced cannot see into: the server is asked afterwards, and
    // its settings are read back where some function may change them.
    if (event.type == 'F') {
      server_->note_backend_state_touched();
      if (!functions_.watches_nothing()) server_->note_session_change();
    }
    editor_.release_held(began_earlier);
    server_->note_frontend_message(event.type);
    server_->expect_forwarded(event.type);
    // A message cut across reads is never run again.
    if (began_earlier || !event.complete()) stop_recording();
    editor_.pass_to(end);
    return note_sent(event.type);
  }
  if (!began_earlier && event.complete()) return process(editor_.bytes(start, end), /*in_place=*/true, end);
  // Read whole across chunks: nothing of it goes out until it is complete.
  whole_.assign(editor_.held());
  editor_.release_held(false);
  whole_.append(editor_.text(start, end));
  editor_.drop_to(end);
  if (carry_ == 0) process(protocol::as_bytes(whole_), /*in_place=*/false, end);
}

void StatementRouter::release_memory() {
  if (carry_ != 0) return;  // a message continues in the next read: whole_ may be gathering it
  editor_.release_memory();
  constexpr std::size_t kKeptCapacity = 4096;
  for (std::string* buffer : {&whole_, &rewritten_}) {
    if (buffer->capacity() > kKeptCapacity) std::string().swap(*buffer);
  }
}

std::vector<std::pair<std::string, std::string>> StatementRouter::statements() const {
  std::vector<std::pair<std::string, std::string>> named;
  client_->for_each([&named](const std::string& name, const pool::PreparedStatement& statement) {
    named.emplace_back(name, statement.definition);
  });
  return named;
}

void StatementRouter::restore(const std::vector<std::pair<std::string, std::string>>& statements,
                              const std::vector<std::string>& custom_setting_names) {
  for (const auto& [name, definition] : statements) client_->add(name, registry_.intern(definition));
  for (const auto& name : custom_setting_names) note_custom_setting_name(name);
}

protocol::Bytes StatementRouter::finish_chunk(std::size_t end, std::size_t partial_header_bytes) {
  const protocol::Bytes out = editor_.finish(end, partial_header_bytes);
  if (record_from_ == kNotRecorded) return out;
  // The batch's bytes in this chunk, in one copy.
  auto& replay = server_->batch_replay();
  const std::size_t from = std::min(record_from_, out.size());
  const std::size_t to = std::min(record_to_, out.size());
  replay.add(text_of(out.subspan(from, to - from)));
  if (record_to_ != kNotRecorded) replay.complete();
  record_from_ = kNotRecorded;
  record_to_ = kNotRecorded;
  return out;
}

void StatementRouter::stop_recording() {
  if (record_from_ == kNotRecorded) return;
  server_->batch_replay().stop();
  record_from_ = kNotRecorded;
  record_to_ = kNotRecorded;
}

void StatementRouter::process(protocol::Bytes message, bool in_place, std::size_t end) {
  rewritten_.clear();
  processing_ = static_cast<char>(message[0]);
  switch (static_cast<char>(message[0])) {
    case 'P':
      if (const auto parse_message = protocol::read_parse(message)) {
        if (route_sql(protocol::query_text(parse_message->definition), 'P', parse_message->name.empty())) {
          return replace(in_place, end);
        }
        if (parse_message->name.empty()) break;
        parse(*parse_message);
        return replace(in_place, end);
      }
      break;
    case 'B':
      if (const auto bind_message = protocol::read_bind(message)) {
        if (!bind_message->statement.empty()) {
          bind(*bind_message);
          return replace(in_place, end);
        }
        if (unnamed_calls_watched_) note_watched_call();
      }
      break;
    case 'D':
    case 'C':
      if (const auto target = protocol::read_target(message);
          target && target->target == 'S' && !target->name.empty()) {
        if (message[0] == 'D') {
          describe(*target);
        } else {
          close(*target);
        }
        return replace(in_place, end);
      }
      break;
    case 'Q':
      if (route_sql(protocol::query_text(text_of(message).substr(kHeaderSize)), 'Q', false)) {
        return replace(in_place, end);
      }
      break;
    default:
      break;
  }
  server_->note_frontend_message(static_cast<char>(message[0]));
  server_->expect_forwarded(static_cast<char>(message[0]));
  if (in_place) {
    editor_.pass_to(end);
  } else {
    editor_.insert(text_of(message));
  }
  note_sent(static_cast<char>(message[0]));
}

void StatementRouter::replace(bool in_place, std::size_t end) {
  editor_.insert(rewritten_);
  if (in_place) editor_.drop_to(end);
  note_sent(processing_);
}

void StatementRouter::note_recorded(char type) {
  if (type == 'S') {
    record_to_ = editor_.output_size();
  } else if (type == 'Q' || type == 'F' || type == 'd' || type == 'c' || type == 'f') {
    stop_recording();  // never run again unseen
  }
}

void StatementRouter::send(PendingReply entry) {
  server_->note_frontend_message(entry.request);
  server_->expect_reply(std::move(entry));
}

PendingReply StatementRouter::for_client(PendingKind kind, char request, std::string_view name,
                                         pool::StatementPtr statement) const {
  PendingReply entry = pool::pending_reply(kind, request, std::move(statement));
  entry.client = client_;
  entry.client_name = name;
  entry.restores_name = request == 'C';
  return entry;
}

void StatementRouter::parse(const protocol::ParseMessage& message) {
  if (client_->find(message.name) != nullptr) {
    protocol::append_parse(rewritten_, {}, {}, kFailingDefinition);
    return send(pool::pending_reply(
        PendingKind::refused, 'P', {},
        error_reply(sqlstate::kDuplicatePreparedStatement,
                    "prepared statement \"" + std::string(message.name) + "\" already exists")));
  }
  auto statement = registry_.intern(message.definition);
  client_->add(message.name, statement);
  auto& cache = server_->statements();
  if (server_->transaction_status() == 'E') {
    // PostgreSQL refuses a Parse in a failed transaction: an unnamed one lets it say so.
    protocol::append_parse(rewritten_, {}, {}, message.definition);
    return send(for_client(PendingKind::forwarded, 'P', message.name, std::move(statement)));
  }
  if (cache.touch(*statement)) {
    // The server's copy may be older than the schema: PostgreSQL parses it
    // anew, under the same name, as it would for a client of its own.
    protocol::append_target(rewritten_, 'C', 'S', statement->server_name, cache.suffix());
    send(pool::pending_reply(PendingKind::injected_close, 'C', statement));
  } else {
    append_stale_closes();
    append_eviction(cache.add(statement));
  }
  protocol::append_parse(rewritten_, statement->server_name, cache.suffix(), message.definition);
  send(for_client(PendingKind::client_parse, 'P', message.name, std::move(statement)));
}

void StatementRouter::bind(const protocol::BindMessage& message) {
  const pool::StatementPtr* named = client_->find(message.statement);
  if (named == nullptr) {
    protocol::append_bind(rewritten_, message, kMissingStatement, {});
    return send(
        pool::pending_reply(PendingKind::refused, 'B', {}, missing_statement_error(message.statement)));
  }
  const pool::StatementPtr statement = *named;
  if (statement->changes_session) server_->note_session_change();
  if (statement->changes_functions) server_->note_functions_changed();
  if (statement->may_call_functions) note_watched_calls(*statement);
  note_backend_effect(statement->backend_effect, /*runs_now=*/true);
  // The server's copy may be stale: the batch from here is kept, to run again
  // (the ReplyLedger judges whether that is safe).
  if (ensure_on_server(statement) && (record_to_ != kNotRecorded || !server_->batch_replay().recording())) {
    server_->batch_replay().start(statement);
    record_from_ = editor_.output_size();
    record_to_ = kNotRecorded;
  }
  protocol::append_bind(rewritten_, message, statement->server_name, server_->statements().suffix());
  server_->note_frontend_message('B');
  server_->expect_bind(statement);
}

void StatementRouter::describe(const protocol::TargetMessage& message) {
  const pool::StatementPtr* named = client_->find(message.name);
  if (named == nullptr) {
    protocol::append_target(rewritten_, 'D', 'S', kMissingStatement, {});
    return send(pool::pending_reply(PendingKind::refused, 'D', {}, missing_statement_error(message.name)));
  }
  const pool::StatementPtr statement = *named;
  // A copy the server held may describe yesterday's schema: a batch that
  // showed it the client is not run again with today's.
  const bool held = ensure_on_server(statement);
  protocol::append_target(rewritten_, 'D', 'S', statement->server_name, server_->statements().suffix());
  send(pool::pending_reply(PendingKind::forwarded, 'D', held ? statement : nullptr));
}

// The server keeps the statement for other clients; closing an unknown name
// is no error in PostgreSQL either.
void StatementRouter::close(const protocol::TargetMessage& message) {
  auto answered = for_client(PendingKind::answered, 'C', message.name, client_->remove(message.name));
  protocol::append_close_complete(answered.reply);
  server_->expect_reply(std::move(answered));
}

void StatementRouter::note_custom_setting_names(std::string_view sql) {
  for (std::string& name : protocol::find_custom_setting_names(sql))
    note_custom_setting_name(std::move(name));
}

void StatementRouter::note_custom_setting_name(std::string name) {
  if (custom_setting_names_.size() >= kMaxCustomSettingNames) return;
  if (name.size() > kMaxCustomSettingNameBytes) return;  // each read names them all
  if (std::find(custom_setting_names_.begin(), custom_setting_names_.end(), name) ==
      custom_setting_names_.end())
    custom_setting_names_.push_back(std::move(name));
}

// The look that costs a database without such functions nothing more.
bool StatementRouter::calls_watched(std::string_view sql) const {
  return !functions_.watches_nothing() && protocol::calls_watched(sql, functions_.names());
}

void StatementRouter::note_watched_calls(std::string_view sql) {
  if (calls_watched(sql)) note_watched_call();
}

// A named statement's verdict holds until the pool's watch learns something new.
void StatementRouter::note_watched_calls(const pool::PreparedStatement& statement) {
  if (functions_.watches_nothing()) return;
  if (statement.watch_generation != functions_.generation()) {
    statement.calls_watched =
        protocol::calls_watched(protocol::query_text(statement.definition), functions_.names());
    statement.watch_generation = functions_.generation();
  }
  if (statement.calls_watched) note_watched_call();
}

void StatementRouter::note_watched_call() {
  server_->note_session_change();
  for (const std::string& name : functions_.custom_names()) note_custom_setting_name(name);
}

void StatementRouter::note_backend_effect(protocol::SqlBackendEffect effect, bool runs_now) {
  if (effect == protocol::SqlBackendEffect::none) return;
  // A lock is sure to be held only once its statement has run: an unnamed Parse may only be described.
  if (effect == protocol::SqlBackendEffect::takes_session_lock && runs_now)
    return server_->note_session_lock_taken();
  server_->note_backend_state_touched();
  if (effect == protocol::SqlBackendEffect::loads_library) server_->note_library_loaded();
}

bool StatementRouter::route_sql(std::string_view sql, char request, bool unnamed_parse) {
  const auto commands = protocol::find_sql_commands(sql);
  if (commands.session == protocol::SqlSessionEffect::settings) {
    server_->note_session_change();
    note_custom_setting_names(sql);
  }
  if (protocol::makes_backend_state(commands.backend) &&
      session_state_ == config::SessionStatePolicy::refuse) {
    return refuse(request, sqlstate::kFeatureNotSupported,
                  "this statement keeps session state on its server connection, which this pool refuses",
                  "The database's session_state is \"refuse\" (transaction pooling): temporary tables "
                  "(other than ON COMMIT DROP), session advisory locks, LISTEN, WITH HOLD cursors, SQL "
                  "PREPARE and LOAD are refused. With session_state \"pin\" the client keeps its server "
                  "while such state lasts.");
  }
  // Named Parses are marked when they are bound (the statement carries its effect).
  if (request == 'Q' || unnamed_parse) {
    note_backend_effect(commands.backend, /*runs_now=*/!unnamed_parse);
    // Whatever the string calls may be among the functions made: it is read back, the pool reads
    // the catalog again after it.
    if (commands.changes_functions) {
      server_->note_functions_changed();
      server_->note_session_change();
    }
    // An unnamed Parse runs nothing: its calls count when it is bound (a psql \gdesc, which
    // only describes, needs no read-back, whose own query would replace the statement).
    if (unnamed_parse) {
      unnamed_calls_watched_ = calls_watched(sql);
    } else {
      note_watched_calls(sql);
    }
  }
  const auto& use = commands.prepared;
  switch (use.command) {
    case protocol::SqlPreparedCommand::deallocate:
      if (unnamed_parse) {
        if (const auto name = protocol::lone_deallocate_name(sql); name && client_->find(*name) != nullptr)
          return deallocate(*name);
      }
      // Another name is the server's own business (an SQL PREPARE of this pinned client, or
      // nothing); one of sluiced's would leave the cache wrong, so it starts over.
      if (const auto name = protocol::lone_deallocate_name(sql); !name || name->starts_with("sluice_"))
        server_->statements().start_new_generation();
      return false;
    case protocol::SqlPreparedCommand::deallocate_all:
    case protocol::SqlPreparedCommand::discard_all:
      // The server drops every statement it holds: the client's are gone, and
      // this server's cache starts over under new names.
      client_->clear();
      server_->statements().start_new_generation();
      return false;
    case protocol::SqlPreparedCommand::prepare:
    case protocol::SqlPreparedCommand::execute:
    case protocol::SqlPreparedCommand::none:
      return false;
  }
  return false;
}

// psycopg 3 deallocates its least recently used statement this way (an
// unnamed Parse of "DEALLOCATE _pg3_N", Bind, Execute). The server gets a
// DEALLOCATE of a statement made for it, so the client sees PostgreSQL's
// replies (its tag, its errors in a failed transaction), and the client's
// name is forgotten.
// The request goes to the server in a form that fails there (so the skip-to-Sync
// rule and a transaction's abort happen as for any error), and `message` is
// what the client sees in place of the server's error.
bool StatementRouter::refuse(char request, const char* sqlstate, const std::string& message,
                             std::string_view detail) {
  if (request == 'Q') {
    protocol::append_query(rewritten_, kFailingQuery);
  } else {
    protocol::append_parse(rewritten_, {}, {}, kFailingDefinition);
  }
  send(pool::pending_reply(PendingKind::refused, request, {}, error_reply(sqlstate, message, detail)));
  return true;
}

bool StatementRouter::deallocate(const std::string& name) {
  // In a failed transaction PostgreSQL refuses the Parse before any lookup: it may say so itself.
  if (server_->transaction_status() == 'E') return false;
  static std::atomic<std::uint64_t> next_target{1};  // shared by the workers
  auto target = std::make_shared<const pool::PreparedStatement>(pool::PreparedStatement{
      "sluice_deallocated_" + std::to_string(next_target++), std::string("SELECT\0\0\0", 9)});
  protocol::append_parse(rewritten_, target->server_name, {}, target->definition);
  const std::string definition = "DEALLOCATE " + target->server_name + std::string("\0\0\0", 3);
  send(pool::pending_reply(PendingKind::injected_parse, 'P', std::move(target)));
  protocol::append_parse(rewritten_, {}, {}, definition);
  auto forwarded = for_client(PendingKind::forwarded, 'P', name, client_->remove(name));
  forwarded.restores_name = true;
  send(std::move(forwarded));
  return true;
}

bool StatementRouter::ensure_on_server(const pool::StatementPtr& statement) {
  auto& cache = server_->statements();
  if (cache.touch(*statement)) return true;
  append_stale_closes();
  append_eviction(cache.add(statement));
  protocol::append_parse(rewritten_, statement->server_name, cache.suffix(), statement->definition);
  send(pool::pending_reply(PendingKind::injected_parse, 'P', statement));
  return false;
}

void StatementRouter::append_stale_closes() {
  auto& cache = server_->statements();
  for (pool::StatementPtr& stale : cache.take_stale()) {
    protocol::append_target(rewritten_, 'C', 'S', stale->server_name, cache.suffix());
    send(pool::pending_reply(PendingKind::injected_close, 'C', std::move(stale)));
  }
}

void StatementRouter::append_eviction(const pool::StatementPtr& evicted) {
  if (!evicted) return;
  protocol::append_target(rewritten_, 'C', 'S', evicted->server_name, server_->statements().suffix());
  send(pool::pending_reply(PendingKind::injected_close, 'C', evicted));
}

}  // namespace sluice::frontend
