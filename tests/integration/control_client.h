// Helpers for the control-socket, drain and service integration tests: a raw JSON-lines client for
// sluiced's control socket, a runner for child processes (sluicectl, systemd-analyze), and a few
// libpq waits that never block forever.
#pragma once

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"

namespace ctltest {

using namespace std::chrono_literals;

// One connection to a control socket. Writes and reads are non-blocking and interleaved, so a
// daemon that answers and closes halfway through a huge request does not deadlock the test.
class ControlConnection {
 public:
  // Throws std::runtime_error if the socket cannot be reached.
  explicit ControlConnection(const std::string& socket_path);
  ~ControlConnection();
  ControlConnection(const ControlConnection&) = delete;
  ControlConnection& operator=(const ControlConnection&) = delete;

  // Sends every byte unless the peer goes away first (returns false then). Whatever the daemon
  // sends meanwhile is kept for read_line().
  bool send_raw(std::string_view bytes, std::chrono::milliseconds timeout = 10s);
  // The next line (without its newline), or nullopt on EOF, connection reset or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = 10s);
  // Sends one request line and parses the one-line answer; throws if none comes or it is not JSON.
  nlohmann::json request(const nlohmann::json& request);
  // True once the daemon has closed the connection (EOF or reset) within `timeout`, after any
  // pending lines have been consumed by read_line().
  bool wait_closed(std::chrono::milliseconds timeout = 5s);
  // Half-closes our side (the daemon sees EOF).
  void shutdown_write();

 private:
  bool fill(std::chrono::milliseconds timeout);  // reads more into buffered_; false on EOF/timeout

  int fd_ = -1;
  std::string buffered_;
  bool peer_closed_ = false;
};

// One request on a fresh connection.
nlohmann::json control(const std::string& socket_path, const nlohmann::json& request);
inline nlohmann::json status(const std::string& socket_path) {
  return control(socket_path, {{"cmd", "status"}});
}
// Polls status until its "state" is `state`.
bool wait_for_state(const std::string& socket_path, const std::string& state,
                    std::chrono::milliseconds timeout = 10s);

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal (or timed out)
  std::string out;
  std::string err;
};

struct ProcessOptions {
  std::vector<std::string> env{};        // "NAME=VALUE" added to (or replacing in) our environment
  std::vector<std::string> unset_env{};  // names removed from it
  std::optional<uid_t> run_as{};         // setgid/setuid to this user (and its primary group)
  std::chrono::milliseconds timeout = 30s;
};

// Runs argv[0] (a path) to completion, capturing stdout and stderr.
ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// The result of a query sent with PQsendQuery, waiting at most `timeout`; nullopt if it does not
// complete in time. Returns the first result and drains the rest.
std::optional<harness::PgResult> await_result(const harness::PgConn& conn,
                                              std::chrono::milliseconds timeout = 10s);
// Every result of `sql` (PQsendQuery + PQgetResult until null). PQexec keeps only the last one:
// when a server sends a FATAL and closes, that is libpq's "server closed the connection
// unexpectedly" and the FATAL's SQLSTATE is lost. Empty when the query could not be sent.
struct Statement {
  std::vector<harness::PgResult> results;
  std::string connection_error;  // PQerrorMessage afterwards

  [[nodiscard]] bool ok() const;  // results, and none of them an error
  [[nodiscard]] bool has_sqlstate(const std::string& code) const;
  [[nodiscard]] std::string describe() const;
};
Statement exec_all(const harness::PgConn& conn, const std::string& sql);

// A whole file (e.g. sluiced's config, to edit it for a reload).
std::string read_text(const std::string& path);
// Written to a temporary name and renamed: sluiced never reads half a file.
void write_text(const std::string& path, const std::string& text);

// The SQLSTATE of a result, "" when it has none.
std::string sqlstate(const PGresult* result);

// Collects what libpq hands the notice receiver of `conn`: notices, and also an ErrorResponse that
// arrives while the connection is idle (the FATAL a server sends before it closes a connection
// between queries is reported this way, not as a query result). Restores the previous receiver on
// destruction, so declare it after the connection it watches.
class NoticeLog {
 public:
  explicit NoticeLog(const harness::PgConn& conn);
  ~NoticeLog();
  NoticeLog(const NoticeLog&) = delete;
  NoticeLog& operator=(const NoticeLog&) = delete;

  [[nodiscard]] bool saw_sqlstate(const std::string& code) const;
  [[nodiscard]] std::string describe() const;  // "SQLSTATE: message" lines

 private:
  static void receive(void* self, const PGresult* result);
  PGconn* conn_;
  PQnoticeReceiver previous_;
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> entries_;  // sqlstate, message
};

// Waits until the server side closes `conn`, which sits idle between queries: true once libpq
// sees the connection gone (the FATAL before it lands in a NoticeLog), false if still open.
bool await_closed_while_idle(const harness::PgConn& conn, std::chrono::milliseconds timeout = 5s);
// True if `result` or `notices` carries SQLSTATE `code`: however libpq chose to report it.
bool reported_sqlstate(const PGresult* result, const NoticeLog& notices, const std::string& code);

// The uid of the unprivileged account `nobody` (65534 when there is no passwd entry).
uid_t nobody_uid();
gid_t nobody_gid();

}  // namespace ctltest
