// One-line log records to stderr, each with its time and level, written by a
// thread of their own so that no event loop ever waits for stderr (log.cpp).
// Call sites name the pool, client and reason in the message.
#pragma once

#include <atomic>
#include <chrono>
#include <sstream>
#include <string_view>

namespace sluice::log {

enum class Level { debug = 0, info = 1, warning = 2, error = 3 };

namespace detail {
// Read inline at every call site: a record below it costs a load and a compare, not a call.
inline constinit std::atomic<Level> g_level{Level::info};
}  // namespace detail

void set_level(Level level);
[[nodiscard]] inline bool enabled(Level level) {
  return level >= detail::g_level.load(std::memory_order_relaxed);
}
void write(Level level, std::string_view message);
// Waits until every record so far is written, up to `timeout`; false if not (stderr stalled).
bool flush(std::chrono::milliseconds timeout);
// "debug" | "info" | "warning" | "error"; anything else means info.
Level level_from_name(std::string_view name);

template <class... Parts>
[[gnu::noinline]] void emit_enabled(Level level, const Parts&... parts) {
  std::ostringstream line;
  (line << ... << parts);
  write(level, line.str());
}

template <class... Parts>
void emit(Level level, const Parts&... parts) {
  if (enabled(level)) emit_enabled(level, parts...);
}

template <class... Parts>
void debug(const Parts&... parts) {
  emit(Level::debug, parts...);
}
template <class... Parts>
void info(const Parts&... parts) {
  emit(Level::info, parts...);
}
template <class... Parts>
void warning(const Parts&... parts) {
  emit(Level::warning, parts...);
}
template <class... Parts>
void error(const Parts&... parts) {
  emit(Level::error, parts...);
}

}  // namespace sluice::log
