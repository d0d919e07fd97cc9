// Helpers shared by the scope_*_test.cpp integration tests: libpq clients in forked child
// processes (so that they can be SIGKILLed like a crashed application), sluiced's scope-end log
// lines, and pg_stat_activity as seen from a direct PostgreSQL connection.
#pragma once

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"

namespace scope_test {

// The child's end of its pipe to the parent: one line per message.
class ChildPipe {
 public:
  explicit ChildPipe(int fd) : fd_(fd) {}
  // Writes `line` and a newline in one write(2), so the parent sees whole lines. Exits the
  // child (status 3) if the parent is gone.
  void say(std::string_view line) const;

 private:
  int fd_;
};

// A forked child process that runs `body` and then blocks until it is killed, reporting to the
// parent through a pipe. In the child every inherited descriptor but the pipe is closed first (so
// the parent's connections are never touched), and it dies with SIGKILL if the parent thread
// that forked it dies. An exception escaping `body` is reported as a line "error: <what>" and
// the child exits with status 2. Fork from one thread only (pipes are not close-on-exec-safe
// across concurrent forks).
class Child {
 public:
  using Body = std::function<void(const ChildPipe&)>;

  explicit Child(const Body& body);
  ~Child();  // SIGKILLs and reaps the child if it still runs
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }

  // The next line the child sent, waiting at most `timeout`; nullopt on timeout or end of file.
  std::optional<std::string> next_line(std::chrono::milliseconds timeout);
  // Reads lines until one starts with `prefix` and returns the rest of it; throws std::runtime_error
  // (with every line read meanwhile) on timeout, end of file or an "error: " line.
  std::string expect(std::string_view prefix, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // SIGKILL and reap. Idempotent.
  void kill();
  // After kill(): whatever lines the child wrote that were not read yet.
  std::vector<std::string> remaining_lines();
  // Every line read so far, in order.
  [[nodiscard]] const std::vector<std::string>& lines() const { return lines_; }

 private:
  bool fill(std::chrono::milliseconds timeout);  // false on timeout or EOF

  pid_t pid_ = -1;
  int read_fd_ = -1;
  bool eof_ = false;
  std::string buffer_;
  std::vector<std::string> lines_;
};

// Runs in a child: throws std::runtime_error with libpq's message unless `sql` succeeded.
void child_exec_ok(PGconn* conn, const std::string& sql);
// Runs in a child: the first column of the first row of `sql`.
std::string child_scalar(PGconn* conn, const std::string& sql);
// Runs in a child: connects or throws.
PGconn* child_connect(const std::string& conninfo);

// One "pool DB/USER: scope of client N ended OUTCOME in X us: REASON" line of sluiced's log.
struct ScopeEnd {
  std::string pool;
  std::uint64_t client = 0;
  std::string outcome;
  std::uint64_t micros = 0;
  std::string reason;
};
// The scope-end lines of `log` from byte offset `from` on.
std::vector<ScopeEnd> scope_ends(const std::string& log, std::size_t from = 0);
std::string describe(const std::vector<ScopeEnd>& ends);

// Overrides that turn on the debug log (scope-end lines), merged with `extra`.
nlohmann::json debug_overrides(const nlohmann::json& extra = nlohmann::json::object());

// Creates database `name` on harness::postgres() unless it exists.
void ensure_database(const std::string& name);

// A direct connection to harness::postgres() (not through sluiced).
harness::PgConn direct(const std::string& dbname = "postgres");

// A backend as pg_stat_activity shows it.
struct Backend {
  int pid = 0;
  std::string state;  // '' when NULL
  std::string query;
  std::string wait_event;
  std::string datname;
};
// The backend with `pid`, or nullopt when it is gone.
std::optional<Backend> backend(const harness::PgConn& observer, int pid);
// Every client backend connected to `dbname`, except the observer itself.
std::vector<Backend> client_backends(const harness::PgConn& observer, const std::string& dbname);
std::string describe(const std::vector<Backend>& backends);
std::string describe(const std::optional<Backend>& backend);

// The current OS user's name (libpq's default user).
std::string os_user();

// A notice receiver that records every notice's SQLSTATE and primary message; libpq hands a
// FATAL ErrorResponse that arrives while no query runs to the notice receiver.
struct Notices {
  std::vector<std::pair<std::string, std::string>> received;  // (sqlstate, message)
  void install(PGconn* conn);
  [[nodiscard]] bool has(std::string_view sqlstate) const;
  [[nodiscard]] std::string describe() const;
};

// Runs a function when it goes out of scope (stopping helper threads on every way out of a test).
template <class F>
class OnExit {
 public:
  explicit OnExit(F f) : f_(std::move(f)) {}
  ~OnExit() { f_(); }
  OnExit(const OnExit&) = delete;
  OnExit& operator=(const OnExit&) = delete;

 private:
  F f_;
};

// Reads whatever the server sent without blocking; true once the connection is closed.
bool connection_closed(PGconn* conn);

// How often `needle` occurs in `text` (log lines, say); overlapping occurrences count.
std::size_t count_of(const std::string& text, const std::string& needle);

}  // namespace scope_test
