#include "tests/integration/control_client.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace ctltest {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(0, left));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

ControlConnection::ControlConnection(const std::string& socket_path) {
  sockaddr_un address{};
  if (socket_path.size() >= sizeof address.sun_path) fail("socket path too long: " + socket_path);
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fail(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    fail("connect " + socket_path + ": " + std::strerror(error));
  }
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

ControlConnection::~ControlConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool ControlConnection::send_raw(std::string_view bytes, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    if (peer_closed_) return false;
    pollfd wake{.fd = fd_, .events = POLLIN | POLLOUT, .revents = 0};
    const int ready = ::poll(&wake, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;  // timed out
    if ((wake.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      // Keep the daemon's answers (an error for a line it refused, say) for read_line().
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n > 0) {
        buffered_.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        peer_closed_ = true;
        return false;
      }
    }
    if ((wake.revents & POLLOUT) != 0) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, std::min<std::size_t>(bytes.size() - sent, 65536),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;  // EPIPE / ECONNRESET: the daemon closed its end
      }
    }
  }
  return true;
}

bool ControlConnection::fill(milliseconds timeout) {
  if (peer_closed_) return false;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffered_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      peer_closed_ = true;  // EOF, or ECONNRESET once the queued data has been read
      return false;
    }
    pollfd wake{.fd = fd_, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&wake, 1, remaining_ms(deadline));
    if (ready == 0) return false;
  }
}

std::optional<std::string> ControlConnection::read_line(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    if (!fill(milliseconds(remaining_ms(deadline)))) return std::nullopt;
  }
}

nlohmann::json ControlConnection::request(const nlohmann::json& request) {
  if (!send_raw(request.dump() + "\n")) fail("control: could not send " + request.dump());
  const auto line = read_line();
  if (!line) fail("control: no answer to " + request.dump());
  auto answer = nlohmann::json::parse(*line, nullptr, false);
  if (answer.is_discarded()) fail("control: answer to " + request.dump() + " is not JSON: " + *line);
  return answer;
}

bool ControlConnection::wait_closed(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!peer_closed_) {
    if (Clock::now() >= deadline) return false;
    fill(milliseconds(remaining_ms(deadline)));
  }
  return true;
}

void ControlConnection::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

nlohmann::json control(const std::string& socket_path, const nlohmann::json& request) {
  ControlConnection connection(socket_path);
  return connection.request(request);
}

bool wait_for_state(const std::string& socket_path, const std::string& state, milliseconds timeout) {
  return harness::wait_until(
      [&] {
        try {
          const auto answer = status(socket_path);
          return answer.value("state", "") == state;
        } catch (const std::exception&) {
          return false;
        }
      },
      timeout);
}

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options) {
  harness::TempDir dir("sluice-proc");
  const std::string out_path = dir.path() + "/stdout";
  const std::string err_path = dir.path() + "/stderr";

  // Everything the child needs, prepared before fork.
  std::vector<std::string> env_strings;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::string name(text.substr(0, text.find('=')));
    const bool replaced = std::any_of(options.env.begin(), options.env.end(),
                                      [&](const std::string& e) { return e.substr(0, e.find('=')) == name; });
    const bool removed =
        std::find(options.unset_env.begin(), options.unset_env.end(), name) != options.unset_env.end();
    if (!replaced && !removed) env_strings.emplace_back(text);
  }
  env_strings.insert(env_strings.end(), options.env.begin(), options.env.end());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);
  const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (out_fd < 0 || err_fd < 0) fail("run_process: cannot open capture files in " + dir.path());
  uid_t uid = 0;
  gid_t gid = 0;
  if (options.run_as) {
    uid = *options.run_as;
    const passwd* pw = ::getpwuid(uid);
    gid = pw != nullptr ? pw->pw_gid : static_cast<gid_t>(uid);
  }

  const pid_t pid = ::fork();
  if (pid < 0) fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (options.run_as && (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0))
      _exit(126);
    if (::dup2(out_fd, STDOUT_FILENO) < 0 || ::dup2(err_fd, STDERR_FILENO) < 0) _exit(126);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execve(argp[0], argp.data(), envp.data());
    _exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);

  ProcessResult result;
  int status = 0;
  const bool done =
      harness::wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, options.timeout);
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    result.err = "run_process: " + argv[0] + " did not finish in time\n";
  }
  if (done && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = slurp(out_path);
  result.err += slurp(err_path);
  return result;
}

std::optional<harness::PgResult> await_result(const harness::PgConn& conn, milliseconds timeout) {
  PGconn* c = conn.get();
  const bool ready = harness::wait_until(
      [&] {
        if (PQconsumeInput(c) == 0) return true;  // connection lost: PQgetResult reports it
        return PQisBusy(c) == 0;
      },
      timeout);
  if (!ready) return std::nullopt;
  harness::PgResult first(PQgetResult(c));
  // Drain the rest (up to the end of the query) so the connection is ready for the next one.
  for (;;) {
    if (!harness::wait_until([&] { return PQconsumeInput(c) == 0 || PQisBusy(c) == 0; }, timeout)) break;
    harness::PgResult next(PQgetResult(c));
    if (!next) break;
  }
  return first;
}

bool Statement::ok() const {
  return !results.empty() && std::all_of(results.begin(), results.end(), [](const harness::PgResult& r) {
    const auto status = PQresultStatus(r.get());
    return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY;
  });
}

bool Statement::has_sqlstate(const std::string& code) const {
  return std::any_of(results.begin(), results.end(),
                     [&](const harness::PgResult& r) { return sqlstate(r.get()) == code; });
}

std::string Statement::describe() const {
  std::string text;
  for (const auto& r : results) {
    text += std::string(PQresStatus(PQresultStatus(r.get()))) + " [" + sqlstate(r.get()) + "] " +
            PQresultErrorMessage(r.get()) + "; ";
  }
  if (results.empty()) text = "not sent: ";
  return text + "connection: " + connection_error;
}

Statement exec_all(const harness::PgConn& conn, const std::string& sql) {
  Statement statement;
  PGconn* c = conn.get();
  if (PQsendQuery(c, sql.c_str()) == 1) {
    while (PGresult* result = PQgetResult(c)) statement.results.emplace_back(result);
  }
  statement.connection_error = PQerrorMessage(c);
  return statement;
}

std::string sqlstate(const PGresult* result) {
  if (result == nullptr) return "";
  const char* code = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return code != nullptr ? code : "";
}

NoticeLog::NoticeLog(const harness::PgConn& conn)
    : conn_(conn.get()), previous_(PQsetNoticeReceiver(conn.get(), &NoticeLog::receive, this)) {}

NoticeLog::~NoticeLog() { PQsetNoticeReceiver(conn_, previous_, nullptr); }

void NoticeLog::receive(void* self, const PGresult* result) {
  auto* log = static_cast<NoticeLog*>(self);
  const std::lock_guard lock(log->mutex_);
  const char* message = PQresultErrorMessage(result);
  log->entries_.emplace_back(sqlstate(result), message != nullptr ? message : "");
}

bool NoticeLog::saw_sqlstate(const std::string& code) const {
  const std::lock_guard lock(mutex_);
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const auto& entry) { return entry.first == code; });
}

std::string NoticeLog::describe() const {
  const std::lock_guard lock(mutex_);
  std::string text;
  for (const auto& [code, message] : entries_) text += code + ": " + message;
  return text.empty() ? "(no notices)" : text;
}

bool await_closed_while_idle(const harness::PgConn& conn, milliseconds timeout) {
  PGconn* c = conn.get();
  return harness::wait_until(
      [&] {
        if (PQstatus(c) == CONNECTION_BAD) return true;
        const bool read_ok = PQconsumeInput(c) != 0;
        PQisBusy(c);  // parses what arrived: an idle-time ErrorResponse goes to the notice receiver
        return !read_ok || PQstatus(c) == CONNECTION_BAD;
      },
      timeout);
}

bool reported_sqlstate(const PGresult* result, const NoticeLog& notices, const std::string& code) {
  return sqlstate(result) == code || notices.saw_sqlstate(code);
}

uid_t nobody_uid() {
  const passwd* pw = ::getpwnam("nobody");
  return pw != nullptr ? pw->pw_uid : 65534;
}

gid_t nobody_gid() {
  const passwd* pw = ::getpwnam("nobody");
  return pw != nullptr ? pw->pw_gid : 65534;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".new";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw std::runtime_error("cannot write " + temporary);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename to " + path);
}

}  // namespace ctltest
