#include "pool/connection_counts.h"

#include <algorithm>

namespace sluice::pool {
namespace {

template <class Line, class Item>
int place_of(const Line& line, const Item& item) {
  return static_cast<int>(std::find(line.begin(), line.end(), item) - line.begin());
}

template <class Line, class Item>
void move_to_end(Line& line, const Item& item) {
  const auto found = std::find(line.begin(), line.end(), item);
  if (found == line.end()) return;
  line.erase(found);
  line.push_back(item);
}

}  // namespace

bool ConnectionCount::try_take(Member& member, int limit) {
  std::uint64_t current = places_.load(std::memory_order_relaxed);
  while (limit <= 0 || taken_in(current) < limit) {
    if (places_.compare_exchange_weak(current, current + kServer, std::memory_order_relaxed)) {
      member.servers_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void ConnectionCount::start_starving(Member& member, const void* pool) {
  const std::lock_guard lock(line_mutex_);
  if (std::find(member.line_.begin(), member.line_.end(), pool) == member.line_.end())
    member.line_.push_back(pool);
  if (std::find(line_.begin(), line_.end(), &member) == line_.end()) line_.push_back(&member);
  starving_members_.store(static_cast<int>(line_.size()), std::memory_order_relaxed);
}

void ConnectionCount::stop_starving(Member& member, const void* pool) {
  const std::lock_guard lock(line_mutex_);
  std::erase(member.line_, pool);
  if (member.line_.empty()) std::erase(line_, &member);
  starving_members_.store(static_cast<int>(line_.size()), std::memory_order_relaxed);
}

void ConnectionCount::to_end_of_line(Member& member, const void* pool) {
  const std::lock_guard lock(line_mutex_);
  move_to_end(member.line_, pool);
  move_to_end(line_, static_cast<const Member*>(&member));
}

ConnectionCount::Waiting ConnectionCount::waiting_beside(const Member& member) const {
  const std::lock_guard lock(line_mutex_);
  Waiting waiting{.member_pools = static_cast<int>(member.line_.size())};
  for (const Member* other : line_) {
    if (other == &member) continue;
    ++waiting.other_members;
    waiting.fewest_other_servers = std::min(waiting.fewest_other_servers, other->servers());
  }
  return waiting;
}

int ConnectionCount::place_in_line(const Member& member) const {
  const std::lock_guard lock(line_mutex_);
  return place_of(line_, &member);
}

int ConnectionCount::place_in_member_line(const Member& member, const void* pool) const {
  const std::lock_guard lock(line_mutex_);
  return place_of(member.line_, pool);
}

ConnectionCounts::Seats ConnectionCounts::join(const std::string& database, const std::string& user) {
  const std::lock_guard lock(mutex_);
  return {join(databases_, database, user), join(users_, user, database)};
}

void ConnectionCounts::leave(const std::string& database, const std::string& user) {
  const std::lock_guard lock(mutex_);
  leave(databases_, database, user);
  leave(users_, user, database);
}

bool ConnectionCounts::has_pool(const std::string& database, const std::string& user) const {
  const std::lock_guard lock(mutex_);
  const auto count = databases_.find(database);
  return count != databases_.end() && count->second.members_.contains(user);
}

std::size_t ConnectionCounts::size() const {
  const std::lock_guard lock(mutex_);
  std::size_t members = 0;
  for (const Counts* counts : {&databases_, &users_}) {
    for (const auto& [name, count] : *counts) members += count.members_.size();
  }
  return databases_.size() + users_.size() + members;
}

CountSeat ConnectionCounts::join(Counts& counts, const std::string& name, const std::string& member) {
  ConnectionCount& count = counts.try_emplace(name).first->second;
  ConnectionCount::Member& joined = count.members_.try_emplace(member).first->second;
  ++joined.pools_;
  return {&count, &joined};
}

void ConnectionCounts::leave(Counts& counts, const std::string& name, const std::string& member) {
  const auto count = counts.find(name);
  if (count == counts.end()) return;
  auto& members = count->second.members_;
  const auto left = members.find(member);
  if (left == members.end() || --left->second.pools_ > 0) return;
  members.erase(left);
  if (members.empty()) counts.erase(count);
}

}  // namespace sluice::pool
