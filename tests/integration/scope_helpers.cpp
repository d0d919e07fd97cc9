#include "tests/integration/scope_helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace scope_test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

// ---- Child ----

void ChildPipe::say(std::string_view line) const {
  std::string text(line);
  text += '\n';
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);
    done += static_cast<std::size_t>(n);
  }
}

Child::Child(const Body& body) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) fail(std::string("pipe: ") + std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    fail(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The child: keep only stdin/out/err and the pipe, as descriptor 3.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
    if (dup2(fds[1], 3) < 0) _exit(126);
    close_range(4, ~0U, 0);
    signal(SIGPIPE, SIG_IGN);
    const ChildPipe out(3);
    try {
      body(out);
    } catch (const std::exception& e) {
      std::string what = e.what();
      for (char& c : what) {
        if (c == '\n') c = ' ';
      }
      out.say("error: " + what);
      _exit(2);
    } catch (...) {
      out.say("error: unknown exception");
      _exit(2);
    }
    for (;;) pause();  // until the parent kills it
  }
  close(fds[1]);
  pid_ = pid;
  read_fd_ = fds[0];
}

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      read_fd_(std::exchange(other.read_fd_, -1)),
      eof_(other.eof_),
      buffer_(std::move(other.buffer_)),
      lines_(std::move(other.lines_)) {}

Child::~Child() {
  kill();
  if (read_fd_ >= 0) close(read_fd_);
}

void Child::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

bool Child::fill(milliseconds timeout) {
  if (eof_ || read_fd_ < 0) return false;
  pollfd wake{.fd = read_fd_, .events = POLLIN, .revents = 0};
  const int ready = poll(&wake, 1, static_cast<int>(timeout.count()));
  if (ready <= 0) return false;
  char chunk[4096];
  const ssize_t n = read(read_fd_, chunk, sizeof chunk);
  if (n <= 0) {
    if (n < 0 && errno == EINTR) return true;
    eof_ = true;
    return false;
  }
  buffer_.append(chunk, static_cast<std::size_t>(n));
  return true;
}

std::optional<std::string> Child::next_line(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (const auto newline = buffer_.find('\n'); newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      lines_.push_back(line);
      return line;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left < milliseconds::zero()) return std::nullopt;
    if (!fill(left)) {
      if (eof_ || Clock::now() >= deadline) return std::nullopt;
    }
  }
}

std::string Child::expect(std::string_view prefix, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    const auto line = next_line(std::max(left, milliseconds::zero()));
    if (!line) {
      std::string seen;
      for (const std::string& l : lines_) seen += "\n  " + l;
      fail("child " + std::to_string(pid_) + ": no line starting with '" + std::string(prefix) + "' (" +
           (eof_ ? "it closed its pipe" : "timed out") + "); lines so far:" + seen);
    }
    if (line->starts_with("error: ")) fail("child " + std::to_string(pid_) + " failed: " + *line);
    if (line->starts_with(prefix)) return line->substr(prefix.size());
  }
}

std::vector<std::string> Child::remaining_lines() {
  std::vector<std::string> rest;
  while (auto line = next_line(milliseconds(5000))) rest.push_back(*line);
  return rest;
}

PGconn* child_connect(const std::string& conninfo) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    fail("connect: " + trim(conn != nullptr ? PQerrorMessage(conn) : "out of memory"));
  }
  return conn;
}

void child_exec_ok(PGconn* conn, const std::string& sql) {
  PGresult* result = PQexec(conn, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  const std::string message = trim(PQresultErrorMessage(result));
  PQclear(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail("\"" + sql + "\": " + message);
}

std::string child_scalar(PGconn* conn, const std::string& sql) {
  PGresult* result = PQexec(conn, sql.c_str());
  if (PQresultStatus(result) != PGRES_TUPLES_OK || PQntuples(result) < 1) {
    const std::string message = trim(PQresultErrorMessage(result));
    PQclear(result);
    fail("\"" + sql + "\": " + message);
  }
  std::string value = PQgetvalue(result, 0, 0);
  PQclear(result);
  return value;
}

// ---- sluiced's log ----

std::vector<ScopeEnd> scope_ends(const std::string& log, std::size_t from) {
  static const std::regex kLine(R"(pool (\S+): scope of client (\d+) ended (\w+) in (\d+) us: (.*))");
  std::vector<ScopeEnd> ends;
  std::istringstream in(from < log.size() ? log.substr(from) : std::string());
  std::string line;
  std::smatch match;
  while (std::getline(in, line)) {
    if (!std::regex_search(line, match, kLine)) continue;
    ends.push_back({.pool = match[1],
                    .client = std::stoull(match[2]),
                    .outcome = match[3],
                    .micros = std::stoull(match[4]),
                    .reason = match[5]});
  }
  return ends;
}

std::string describe(const std::vector<ScopeEnd>& ends) {
  std::string text;
  for (const ScopeEnd& end : ends) {
    text += "\n  client " + std::to_string(end.client) + " " + end.outcome + " in " +
            std::to_string(end.micros) + " us: " + end.reason;
  }
  return ends.empty() ? "(none)" : text;
}

nlohmann::json debug_overrides(const nlohmann::json& extra) {
  nlohmann::json overrides = {{"log_level", "debug"}};
  overrides.merge_patch(extra);
  return overrides;
}

// ---- PostgreSQL ----

harness::PgConn direct(const std::string& dbname) {
  return harness::connect(harness::postgres().conninfo(dbname));
}

void ensure_database(const std::string& name) {
  const harness::PgConn conn = direct("postgres");
  if (harness::scalar(conn, "SELECT count(*) FROM pg_database WHERE datname = '" + name + "'") == "0") {
    harness::exec_ok(conn, "CREATE DATABASE " + name);
  }
}

namespace {

std::vector<Backend> backends_of(const harness::PgResult& result) {
  std::vector<Backend> backends;
  backends.reserve(static_cast<std::size_t>(PQntuples(result.get())));
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    backends.push_back({.pid = std::stoi(PQgetvalue(result.get(), row, 0)),
                        .state = PQgetvalue(result.get(), row, 1),
                        .query = PQgetvalue(result.get(), row, 2),
                        .wait_event = PQgetvalue(result.get(), row, 3),
                        .datname = PQgetvalue(result.get(), row, 4)});
  }
  return backends;
}

constexpr const char* kBackendColumns =
    "SELECT pid, coalesce(state, ''), coalesce(query, ''), coalesce(wait_event, ''), coalesce(datname, '') "
    "FROM pg_stat_activity ";

}  // namespace

std::optional<Backend> backend(const harness::PgConn& observer, int pid) {
  const harness::PgResult result =
      harness::exec(observer, std::string(kBackendColumns) + "WHERE pid = " + std::to_string(pid));
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    fail(std::string("pg_stat_activity: ") + PQresultErrorMessage(result.get()));
  }
  auto backends = backends_of(result);
  if (backends.empty()) return std::nullopt;
  return backends.front();
}

std::vector<Backend> client_backends(const harness::PgConn& observer, const std::string& dbname) {
  const harness::PgResult result = harness::exec(
      observer, std::string(kBackendColumns) + "WHERE backend_type = 'client backend' AND datname = '" +
                    dbname + "' AND pid <> pg_backend_pid() ORDER BY pid");
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    fail(std::string("pg_stat_activity: ") + PQresultErrorMessage(result.get()));
  }
  return backends_of(result);
}

std::string describe(const std::vector<Backend>& backends) {
  std::string text;
  for (const Backend& b : backends) {
    text +=
        "\n  pid " + std::to_string(b.pid) + " [" + b.state + "] wait=" + b.wait_event + " query: " + b.query;
  }
  return backends.empty() ? "(none)" : text;
}

std::string describe(const std::optional<Backend>& b) {
  if (!b) return "(gone)";
  return describe(std::vector<Backend>{*b});
}

std::string os_user() {
  const passwd* pw = getpwuid(geteuid());
  if (pw == nullptr) fail("no passwd entry for uid " + std::to_string(geteuid()));
  return pw->pw_name;
}

// ---- notices ----

void Notices::install(PGconn* conn) {
  PQsetNoticeReceiver(
      conn,
      [](void* arg, const PGresult* result) {
        auto* self = static_cast<Notices*>(arg);
        const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
        const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
        self->received.emplace_back(sqlstate != nullptr ? sqlstate : "", message != nullptr ? message : "");
      },
      this);
}

bool Notices::has(std::string_view sqlstate) const {
  return std::ranges::any_of(received, [&](const auto& notice) { return notice.first == sqlstate; });
}

std::string Notices::describe() const {
  std::string text;
  for (const auto& [state, message] : received) {
    text += "\n  ";
    text += state;
    text += ": ";
    text += message;
  }
  return received.empty() ? "(none)" : text;
}

bool connection_closed(PGconn* conn) {
  // PQconsumeInput only reads; PQisBusy parses what was read (so notices reach the receiver),
  // including what arrived just before the end of file.
  const bool open = PQconsumeInput(conn) != 0;
  PQisBusy(conn);
  return !open || PQstatus(conn) == CONNECTION_BAD;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

}  // namespace scope_test
