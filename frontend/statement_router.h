// Transaction mode carries a client's named prepared statements to whichever
// server runs its next transaction. The router reads the client's messages as
// they are forwarded: Parse, Bind, Describe and Close of a named statement are
// renamed to the server's name, preceded by a Parse when the server lacks the
// statement (a Close is answered by sluiced); the server connection's ReplyLedger puts
// the replies back into the order the client expects. Other messages pass
// untouched, without a copy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "pool/prepared_statements.h"
#include "pool/reply_ledger.h"
#include "pool/server_connection.h"
#include "pool/setting_functions.h"
#include "protocol/chunk_editor.h"
#include "protocol/extended_query.h"
#include "protocol/message_scanner.h"

namespace sluice::frontend {

class StatementRouter {
 public:
  // `functions` (the pool's) says which functions may change settings unseen.
  StatementRouter(pool::StatementRegistry& registry, const pool::SettingFunctionWatch& functions,
                  config::SessionStatePolicy session_state);

  // One chunk from the client, bound for `server`: begin, one call per message
  // the scanner reports, then finish, which returns the bytes for the server
  // up to `end` (valid until release_memory() or the next begin). A message's first bytes wait
  // here until its type says whether it must be read whole.
  void begin_chunk(protocol::Bytes chunk, pool::ServerConnection& server);
  void on_message(const protocol::MessageEvent& event);
  protocol::Bytes finish_chunk(std::size_t end, std::size_t partial_header_bytes);

  [[nodiscard]] std::size_t statement_count() const { return client_->size(); }
  // Custom settings ("app.tenant") the client's SQL named: pg_settings does not list them, so
  // reading the client's settings back asks for these by name.
  [[nodiscard]] const std::vector<std::string>& custom_setting_names() const { return custom_setting_names_; }
  // Once a chunk's output is sent, at a message boundary: a large message's buffers are not kept
  // for the client's lifetime (a stream of reads cut mid-message keeps them, still in use).
  void release_memory();
  // A live upgrade: what moves with the client (its statements by name, with their Parse
  // definitions, and the custom setting names), and what the new process restores.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> statements() const;
  void restore(const std::vector<std::pair<std::string, std::string>>& statements,
               const std::vector<std::string>& custom_setting_names);

 private:
  // Handles one whole message: in place (within the chunk, ending at `end`)
  // or gathered in whole_.
  void process(protocol::Bytes message, bool in_place, std::size_t end);
  // The client's message goes out as rewritten_ instead.
  void replace(bool in_place, std::size_t end);
  // A message went to the server. A batch that may run again is recorded
  // (statement_retry.h) from a Bind of a statement the server held: its range
  // of this chunk's output is copied once, by finish_chunk.
  void note_sent(char type) {
    if (record_from_ != kNotRecorded && record_to_ == kNotRecorded) note_recorded(type);
  }
  void note_recorded(char type);
  void stop_recording();
  // Each appends its messages to rewritten_ and tells the server what it owes.
  void parse(const protocol::ParseMessage& message);
  void bind(const protocol::BindMessage& message);
  void describe(const protocol::TargetMessage& message);
  void close(const protocol::TargetMessage& message);
  // Marks what the SQL may do to the session (settings, backend state) and
  // rewrites what must be: true when rewritten_ holds the request of type
  // `request` that goes instead. An unnamed Parse of a lone DEALLOCATE of the
  // client's statement is carried out; DISCARD/DEALLOCATE ALL reset the
  // caches; under session_state "refuse", SQL that makes backend state is
  // refused. SQL PREPARE/EXECUTE pass: the PREPARE pins the client.
  bool route_sql(std::string_view sql, char request, bool unnamed_parse);
  // `runs_now`: a Query, or a named statement's Bind, whose Execute follows as a rule (an unnamed
  // Parse may only be described; its Bind carries no effect).
  void note_backend_effect(protocol::SqlBackendEffect effect, bool runs_now);
  void note_custom_setting_names(std::string_view sql);
  // A call of a function that may change settings (or a write to a table whose trigger may): the
  // settings are read back at release, the custom ones its source names included.
  void note_watched_calls(std::string_view sql);
  void note_watched_calls(const pool::PreparedStatement& statement);
  [[nodiscard]] bool calls_watched(std::string_view sql) const;
  void note_watched_call();
  void note_custom_setting_name(std::string name);
  bool refuse(char request, const char* sqlstate, const std::string& message, std::string_view detail);
  bool deallocate(const std::string& name);
  // A Parse ahead when the server lacks the statement (after a Close of the
  // least recently used when its cache is full); true when it held it.
  bool ensure_on_server(const pool::StatementPtr& statement);
  // Closes of the server's copies PostgreSQL found stale.
  void append_stale_closes();
  void append_eviction(const pool::StatementPtr& evicted);
  void send(pool::PendingReply entry);
  [[nodiscard]] pool::PendingReply for_client(pool::PendingKind kind, char request, std::string_view name,
                                              pool::StatementPtr statement) const;

  // First what each query and its release read, on as few cache lines as it fits: the chunk's
  // server and state, then the buffers whose capacity release_memory() checks.
  pool::StatementRegistry& registry_;
  const pool::SettingFunctionWatch& functions_;
  pool::ServerConnection* server_ = nullptr;  // during a chunk
  static constexpr std::size_t kNotRecorded = static_cast<std::size_t>(-1);
  std::size_t record_from_ = kNotRecorded;  // in this chunk's output
  std::size_t record_to_ = kNotRecorded;    // just past the batch's Sync
  // The message that continues past the chunk: bytes still to come, and
  // whether they are gathered into whole_ (else they pass).
  std::uint64_t carry_ = 0;
  bool carry_gathered_ = false;
  // The client's unnamed statement calls a watched function: its Binds are read back.
  bool unnamed_calls_watched_ = false;
  char processing_ = 0;  // the type of the message process() handles
  config::SessionStatePolicy session_state_;
  protocol::ChunkEditor editor_;
  std::string rewritten_;  // messages written in place of the client's
  std::string whole_;      // a message read whole across chunks
  std::shared_ptr<pool::ClientStatements> client_;
  static constexpr std::size_t kMaxCustomSettingNames = 256;
  static constexpr std::size_t kMaxCustomSettingNameBytes = 128;
  std::vector<std::string> custom_setting_names_;
};

}  // namespace sluice::frontend
