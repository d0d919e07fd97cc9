// Named prepared statements in transaction pooling mode. A client's statement
// must follow it to whichever server runs its next transaction, so sluiced
// keeps three views of them:
//   - PreparedStatement: one definition (query text and parameter types),
//     shared by every client of the pool that prepared the same text, known to
//     servers under one name ("sluice_<n>");
//   - ClientStatements: a client's own names for the statements it prepared;
//   - ServerStatementCache: which statements a server connection holds, least
//     recently used first out when it is full.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/sql_commands.h"

namespace sluice::pool {

struct PreparedStatement {
  std::string server_name;       // what servers know it as, before the cache's suffix
  std::string definition;        // the Parse body after the name: query\0, parameter types
  bool changes_session = false;  // running it dirties the server's session (a SET, say)
  // Running it may make or drop state that keeps a client on its server.
  protocol::SqlBackendEffect backend_effect = protocol::SqlBackendEffect::none;
  // It makes, changes or drops a function (the pool reads the catalog again after it runs).
  bool changes_functions = false;
  // It has a '(' or a statement that writes: it may run a function that changes settings unseen.
  bool may_call_functions = false;
  // Whether it calls one of the pool's watched functions, as of that watch generation (0: not
  // asked). Only its pool's loop touches it.
  mutable std::uint64_t watch_generation = 0;
  mutable bool calls_watched = false;
};
using StatementPtr = std::shared_ptr<const PreparedStatement>;

// Per pool: one PreparedStatement per distinct definition, alive while a
// client or a server cache holds it.
class StatementRegistry {
 public:
  StatementRegistry();
  StatementPtr intern(std::string_view definition);
  [[nodiscard]] std::size_t size() const { return index_->size(); }

 private:
  using Index = std::unordered_map<std::string_view, std::weak_ptr<const PreparedStatement>>;
  std::shared_ptr<Index> index_;  // shared with the statements' deleters
};

// One client's names. PostgreSQL keeps a session's statements until it closes
// them (or DISCARD/DEALLOCATE ALL); so does this.
class ClientStatements {
 public:
  [[nodiscard]] const StatementPtr* find(std::string_view name) const;
  void add(std::string_view name, StatementPtr statement);
  // The statement the name held, if any.
  StatementPtr remove(std::string_view name);
  void clear() { by_name_.clear(); }
  [[nodiscard]] std::size_t size() const { return by_name_.size(); }
  // Each name with its statement (a live upgrade carries them to the new process).
  template <class Visit>
  void for_each(Visit visit) const {
    for (const auto& [name, statement] : by_name_) visit(name, *statement);
  }

 private:
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view name) const { return std::hash<std::string_view>{}(name); }
  };
  std::unordered_map<std::string, StatementPtr, NameHash, std::equal_to<>> by_name_;
};

// Per server connection, bounded by max_prepared_statements. The suffix names
// a generation: after an event that leaves the server's set uncertain (a
// client's DISCARD ALL, a scope cut mid-batch) the cache starts over under new
// names, so a statement the server may still hold never collides with a Parse.
class ServerStatementCache {
 public:
  explicit ServerStatementCache(std::size_t capacity) : capacity_(capacity) {}

  // True when present; marks it most recently used.
  bool touch(const PreparedStatement& statement);
  // Adds it as most recently used; returns the one to close when that went
  // over capacity (null otherwise).
  StatementPtr add(StatementPtr statement);
  void remove(const PreparedStatement& statement);
  // PostgreSQL said its plan is stale (the schema changed under it): it
  // leaves the cache, and the server's copy is closed before the next Parse.
  void mark_stale(const PreparedStatement& statement);
  // The stale statements still to close on the server (moved out).
  std::vector<StatementPtr> take_stale();
  void start_new_generation();
  // A live upgrade: a server whose backend holds statements named in generations up to `generation`
  // (another process's) starts past them, so that no name this process gives can collide.
  void start_generation_after(std::uint32_t generation) {
    generation_ = generation;
    start_new_generation();
  }
  [[nodiscard]] std::uint32_t generation() const { return generation_; }

  [[nodiscard]] const std::string& suffix() const { return suffix_; }
  [[nodiscard]] std::size_t size() const { return index_.size(); }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 private:
  using Lru = std::list<StatementPtr>;  // front: most recently used
  std::size_t capacity_;
  Lru lru_;
  std::unordered_map<const PreparedStatement*, Lru::iterator> index_;
  std::uint32_t generation_ = 0;
  std::string suffix_;
  std::vector<StatementPtr> stale_;  // named under suffix_; a new generation forgets them
};

}  // namespace sluice::pool
