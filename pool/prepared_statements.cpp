#include "pool/prepared_statements.h"

#include <atomic>

#include "protocol/extended_query.h"
#include "protocol/sql_commands.h"

namespace sluice::pool {
namespace {

// Names are never reused, so a server can't mistake a new statement for an old one.
std::atomic<std::uint64_t> next_statement_number{1};

}  // namespace

StatementRegistry::StatementRegistry() : index_(std::make_shared<Index>()) {}

StatementPtr StatementRegistry::intern(std::string_view definition) {
  if (const auto found = index_->find(definition); found != index_->end()) {
    if (auto statement = found->second.lock()) return statement;
  }
  const std::string_view sql = protocol::query_text(definition);
  const auto commands = protocol::find_sql_commands(sql);
  auto* statement = new PreparedStatement{
      "sluice_" + std::to_string(next_statement_number++),
      std::string(definition),
      commands.session != protocol::SqlSessionEffect::none || commands.changes_functions,
      commands.backend,
      commands.changes_functions,
      protocol::may_call_functions(sql)};
  // The index key views the statement's own text: the entry leaves with it,
  // unless a newer statement of the same text has taken the key since.
  StatementPtr shared(statement, [weak_index = std::weak_ptr<Index>(index_)](const PreparedStatement* gone) {
    if (const auto index = weak_index.lock()) {
      const auto entry = index->find(gone->definition);
      if (entry != index->end() && entry->first.data() == gone->definition.data()) index->erase(entry);
    }
    delete gone;
  });
  index_->erase(definition);
  index_->emplace(shared->definition, shared);
  return shared;
}

const StatementPtr* ClientStatements::find(std::string_view name) const {
  const auto found = by_name_.find(name);
  return found == by_name_.end() ? nullptr : &found->second;
}

void ClientStatements::add(std::string_view name, StatementPtr statement) {
  by_name_.insert_or_assign(std::string(name), std::move(statement));
}

StatementPtr ClientStatements::remove(std::string_view name) {
  const auto found = by_name_.find(name);
  if (found == by_name_.end()) return nullptr;
  StatementPtr statement = std::move(found->second);
  by_name_.erase(found);
  return statement;
}

bool ServerStatementCache::touch(const PreparedStatement& statement) {
  const auto found = index_.find(&statement);
  if (found == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, found->second);
  return true;
}

StatementPtr ServerStatementCache::add(StatementPtr statement) {
  if (touch(*statement)) return nullptr;
  const PreparedStatement* key = statement.get();
  lru_.push_front(std::move(statement));
  index_.emplace(key, lru_.begin());
  if (index_.size() <= capacity_) return nullptr;
  StatementPtr evicted = std::move(lru_.back());
  lru_.pop_back();
  index_.erase(evicted.get());
  return evicted;
}

void ServerStatementCache::remove(const PreparedStatement& statement) {
  const auto found = index_.find(&statement);
  if (found == index_.end()) return;
  lru_.erase(found->second);
  index_.erase(found);
}

void ServerStatementCache::mark_stale(const PreparedStatement& statement) {
  const auto found = index_.find(&statement);
  if (found == index_.end()) return;
  stale_.push_back(std::move(*found->second));
  lru_.erase(found->second);
  index_.erase(found);
}

std::vector<StatementPtr> ServerStatementCache::take_stale() {
  std::vector<StatementPtr> stale;
  stale.swap(stale_);
  return stale;
}

void ServerStatementCache::start_new_generation() {
  stale_.clear();
  lru_.clear();
  index_.clear();
  suffix_ = "_g" + std::to_string(++generation_);
}

}  // namespace sluice::pool
