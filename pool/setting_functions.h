// Which functions may change a session's settings where the client's SQL cannot show it: a SET or
// set_config() inside a PL/pgSQL or SQL function, or a trigger's. Per pool, sluiced reads them from
// the catalog (kSettingFunctionsQuery, run on one of its servers outside any client's scope); the
// statement router marks a transaction that calls one, or writes to a table whose trigger may run
// one, as one that changed settings: its settings are read back at release and the server is
// proven clean. Until the first read succeeds every call counts (fail safe, never a leak).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "pool/session_settings.h"
#include "protocol/query_replies.h"
#include "protocol/sql_commands.h"

namespace sluice::pool {

// Rows of (kind, name, value): 'f' a function's name, 't' a table with a trigger running one, 'c' a
// custom setting ("app.tenant") one of them names; then 'b' the server's role and the custom
// settings ALTER ROLE / ALTER DATABASE ... SET give it, with their values (hex of their bytes), its
// reset values when it runs on a clean server. Conservative: any function outside
// pg_catalog and information_schema, in any language but internal and C, whose source mentions
// set_config, SET, RESET or DISCARD (or whose body is SQL-standard and so not in prosrc) counts,
// whatever its schema. Its SET clauses (proconfig) do not protect: a plain SET inside outlives the
// call. Every name is qualified and no pattern needs a backslash: any search_path and
// standard_conforming_strings read it alike.
extern const std::string_view kSettingFunctionsQuery;

struct SettingFunctions {
  protocol::WatchedNames names;
  std::vector<std::string> custom_names;
  std::optional<LearntBaseline> baseline;  // none until read
};

// The names, or what was wrong with the reply (an error, or rows the query does not return).
Result<SettingFunctions> read_setting_functions(const protocol::QueryReply& reply);

// A pool's knowledge of them, and when it is to be read again: never read, made stale by DDL seen
// through sluiced, or older than kMaxAge (a failed read waits kRetryAfterFailure). Never read, or
// stale until a read that began after the DDL has succeeded, every call and write counts.
class SettingFunctionWatch {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kMaxAge{10};
  static constexpr std::chrono::seconds kRetryAfterFailure{5};

  SettingFunctionWatch() { everything_.everything = true; }

  [[nodiscard]] const protocol::WatchedNames& names() const { return stale() ? everything_ : known_.names; }
  // names().none(), kept ready: the one look every query of a database without them pays.
  [[nodiscard]] bool watches_nothing() const { return watches_nothing_; }
  [[nodiscard]] const std::vector<std::string>& custom_names() const { return known_.custom_names; }
  [[nodiscard]] const std::optional<LearntBaseline>& baseline() const { return known_.baseline; }
  // Changes whenever names() does: a prepared statement's verdict is kept until then.
  [[nodiscard]] std::uint64_t generation() const { return generation_ * 2 + (stale() ? 1 : 0); }

  // Time to read them (and no read is under way).
  [[nodiscard]] bool due(Clock::time_point now) const {
    return !reading_ && now >= retry_at_ && (stale() || now >= next_read_);
  }
  void mark_stale() {
    ++marks_;
    watches_nothing_ = false;
  }
  void read_started() {
    reading_ = true;
    marks_at_read_ = marks_;
  }
  // A failure carries its cause, for the log.
  void read_finished(Result<SettingFunctions> read, Clock::time_point now);

 private:
  [[nodiscard]] bool stale() const { return marks_known_ != marks_; }

  SettingFunctions known_;
  protocol::WatchedNames everything_;
  std::uint64_t generation_ = 1;
  bool reading_ = false;
  bool watches_nothing_ = false;
  // DDL seen (marks_), as of the read under way, as of the last read that succeeded: the first
  // read is due at once.
  std::uint64_t marks_ = 1;
  std::uint64_t marks_at_read_ = 0;
  std::uint64_t marks_known_ = 0;
  Clock::time_point next_read_{};
  Clock::time_point retry_at_{};
  bool failing_ = false;  // the last read failed: warned once until one succeeds
};

}  // namespace sluice::pool
