// What transaction pooling must know of a query string before it runs: its
// SQL-level prepared-statement commands (PREPARE, EXECUTE, DEALLOCATE, DISCARD
// ALL), whether it may change session settings (and the custom settings it
// names), read back after it, and whether it may make or drop state that keeps
// a client on its server.
// Pure: no I/O; linear scans over untrusted text, which allocate only for names.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::protocol {

// What a simple-query string does with SQL-level prepared statements, which live on one server
// connection and so cannot follow a client across the pool in transaction mode.
enum class SqlPreparedCommand { none, prepare, execute, deallocate, deallocate_all, discard_all };

struct SqlPreparedUse {
  SqlPreparedCommand command = SqlPreparedCommand::none;
  std::string_view keyword;  // as the client wrote it ("prepare", "EXECUTE", ...); empty for none
};

// Splits `sql` into statements on top-level semicolons and looks at each statement's leading words.
// Returns the first statement that is PREPARE, EXECUTE, or DEALLOCATE [PREPARE] <name> (named),
// and also reports EXPLAIN [ANALYZE] [VERBOSE] EXECUTE / EXPLAIN (options) EXECUTE and
// CREATE [TEMP|TEMPORARY|UNLOGGED] TABLE ... AS EXECUTE as `execute`. When no such statement exists it
// reports the last DEALLOCATE [PREPARE] ALL or DISCARD ALL (deallocate_all / discard_all) if any,
// else none.
//
// `keyword` points into `sql`: the command's own word (EXECUTE even under EXPLAIN or CREATE TABLE).
// PREPARE TRANSACTION '<gid>' is two-phase commit, not a prepared statement, and reports none.
// Lexing follows PostgreSQL with standard_conforming_strings on (its default); an unterminated
// quote or comment ends the scan.
SqlPreparedUse find_sql_prepared_use(std::string_view sql);

// What a query string does to session state that transaction pooling must know of.
enum class SqlSessionEffect {
  none,
  // A session-level SET (SET ROLE and SET SESSION AUTHORIZATION too), RESET or DISCARD,
  // set_config(), or code sluiced cannot see into (DO, CALL, LOAD): the client's settings are read
  // back after its transaction, and the server is reset before another client gets it.
  settings,
};
// Whether any statement in `sql` may change session state. SET LOCAL, SET TRANSACTION and SET CONSTRAINTS
// end with their transaction and count as none. Lexed as find_sql_prepared_use does.
SqlSessionEffect find_sql_session_effect(std::string_view sql);

// The names of custom settings (with a '.', as "app.tenant") that `sql` SETs, RESETs or passes to
// set_config() as a '...' literal: PostgreSQL does not list them in pg_settings, so sluiced must
// know their names to read them back. Each part folded as PostgreSQL folds identifiers.
std::vector<std::string> find_custom_setting_names(std::string_view sql);

// What a query string does to state that lives in its backend and cannot follow a client to
// another server: temporary objects, session advisory locks, WITH HOLD cursors, LISTEN, SQL
// prepared statements, loaded libraries. Ordered: a string's effect is its strongest statement's,
// but for a lock taken beside a statement that touches (see takes_session_lock).
enum class SqlBackendEffect {
  none,
  // May drop such state (UNLISTEN, CLOSE, DROP, DEALLOCATE, DISCARD, an advisory unlock, an
  // ON COMMIT DROP temporary table), or runs code sluiced cannot see into (DO, CALL): the server
  // is asked what the transaction left behind.
  touches,
  // A SELECT that calls pg_advisory_lock or pg_advisory_lock_shared, and nothing else of the kind
  // in the string: once it has run without an error the lock is, as a rule, held, so the client
  // keeps its server without the server being asked (a scan of PostgreSQL's whole lock table). A
  // call that ran on no row keeps it too, until the client runs something that may drop such
  // state (an unlock, DISCARD, ...), which asks, or leaves: a held server, never a lost lock.
  // Beside one that touches, or after a CREATE in the same string: creates.
  takes_session_lock,
  // Makes it: LISTEN, PREPARE, DECLARE ... WITH HOLD, CREATE TEMP (without ON COMMIT DROP) or in
  // pg_temp, SELECT INTO TEMP, a session advisory lock taken otherwise (pg_try_advisory_lock, or
  // named anywhere but in a SELECT), dblink_connect.
  creates,
  // LOAD: a library stays in its backend for good, and no query can tell.
  loads_library,
};
// Lexed as find_sql_prepared_use does.
SqlBackendEffect find_sql_backend_effect(std::string_view sql);
// It makes state that keeps a client on its server (refused under session_state "refuse").
constexpr bool makes_backend_state(SqlBackendEffect effect) {
  return effect >= SqlBackendEffect::takes_session_lock;
}

// All of them, with one look at the string (what the statement router asks of every query).
struct SqlCommands {
  SqlPreparedUse prepared;
  SqlSessionEffect session = SqlSessionEffect::none;
  SqlBackendEffect backend = SqlBackendEffect::none;
  // CREATE, ALTER or DROP of a FUNCTION, PROCEDURE, TRIGGER or EXTENSION, or CREATE OR REPLACE:
  // which functions may change settings has to be learnt again.
  bool changes_functions = false;
};
SqlCommands find_sql_commands(std::string_view sql);

// Functions that may change settings, which sluiced cannot see in the SQL that calls them: their
// names, and the tables whose triggers run such a function. Lower case, sorted, unique.
struct WatchedNames {
  std::vector<std::string> functions;
  std::vector<std::string> tables;
  // Not known (yet): every call and every write counts.
  bool everything = false;
  [[nodiscard]] bool none() const { return !everything && functions.empty() && tables.empty(); }
};

// Whether `sql` may run a watched function: it names one before a '(' (its last part when
// qualified; a "quoted identifier" compared without regard to case, so a collision counts), or a
// statement that writes (INSERT, UPDATE, DELETE, MERGE, COPY, TRUNCATE, also inside WITH) names a
// watched table. Without a '(' or a statement opening with such a word it returns at once.
bool calls_watched(std::string_view sql, const WatchedNames& watched);
// The cheap half of calls_watched: false when no lexer can find a call or a write.
bool may_call_functions(std::string_view sql);

// The statement name when `sql` is only DEALLOCATE [PREPARE] <name> (a trailing semicolon aside),
// as PostgreSQL reads it: an unquoted name folds ASCII letters to lower case, a quoted one keeps
// its case with "" standing for ". nullopt for anything else.
std::optional<std::string> lone_deallocate_name(std::string_view sql);

}  // namespace sluice::protocol
