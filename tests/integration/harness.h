// Integration-test harness: a throwaway PostgreSQL per test binary, sluiced as a child process,
// and small libpq helpers. See README.md beside this file.
#pragma once

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace harness {

// A fresh directory under /tmp (short: Unix socket paths are limited to 107 bytes),
// removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sluice-it");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A throwaway PostgreSQL cluster: initdb into a temp dir (UTF8, C.UTF-8, trust auth), reachable only
// through the Unix socket <socket_dir()>/.s.PGSQL.<port()>. Run as root, the server runs as `postgres`
// and a superuser role named after the invoking user is created, so libpq's default user works.
// The postmaster is a direct child that gets SIGINT (fast shutdown) if this thread dies first.
// Failures throw std::runtime_error carrying the tail of the server log.
// With `tls`, it also listens on TCP 127.0.0.1:<port()> and takes only TLS there (hostssl), for
// the tests of sluiced's TLS to its servers.
struct PostgresTls {
  std::string cert_file;  // copied into the cluster, readable by PostgreSQL only
  std::string key_file;
};

class PostgresServer {
 public:
  explicit PostgresServer(int port, std::optional<PostgresTls> tls = std::nullopt);
  ~PostgresServer();  // stops the server and removes the directory
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;
  PostgresServer(PostgresServer&&) = delete;
  PostgresServer& operator=(PostgresServer&&) = delete;

  void start();    // no-op when running; returns once it accepts connections
  void stop();     // fast shutdown (clients are disconnected); no-op when stopped
  void restart();  // stop, then start on the same data and socket

  [[nodiscard]] bool running() const { return pid_ > 0; }
  [[nodiscard]] pid_t pid() const { return pid_; }  // the postmaster (fault tests stop and resume it)
  [[nodiscard]] const std::string& socket_dir() const { return dir_.path(); }
  [[nodiscard]] int port() const { return port_; }
  // "host=<socket_dir> port=<port> dbname=<dbname>", plus user when given.
  [[nodiscard]] std::string conninfo(const std::string& dbname = "postgres",
                                     const std::string& user = "") const;
  [[nodiscard]] std::string log() const;  // the server log so far

 private:
  void init_cluster();
  void wait_ready();

  TempDir dir_;  // socket dir; the cluster lives in <dir>/data
  int port_;
  std::optional<PostgresTls> tls_;
  pid_t pid_ = -1;  // the postmaster, while running
};

// The PostgresServer of this test binary, started once before the first test by a global
// ::testing::Environment and stopped after the last.
PostgresServer& postgres();

// A port per test binary, so parallel binaries do not share socket names.
int default_postgres_port();  // 54000 + pid % 1000
int default_sluiced_port();   // 55000 + pid % 1000

// What default_config() varies; designated initializers read well: {.pool_size = 2}.
struct PoolOptions {
  std::string dbname = "postgres";  // the databases.<name> key clients connect to
  int pool_size = 4;
  std::string pool_mode = "transaction";  // or "session"
  // Merged last (JSON merge patch), e.g. {{"drain", {{"timeout_s", 1}}}}.
  nlohmann::json overrides = nlohmann::json::object();
};

// A config and the fresh directory it names: listen socket, control socket, config file and log
// all live in `dir`.
struct SluicedConfig {
  TempDir dir;
  int port = 0;
  std::string text;  // JSON
};

// Listens on <dir>/.s.PGSQL.<default_sluiced_port()>, control socket <dir>/control.sock, one database
// `options.dbname` whose conninfo points at postgres() (no dbname/user: the client's are used), and a
// short drain timeout so that stopping sluiced stays quick.
SluicedConfig default_config(const PoolOptions& options = {});

// sluiced (SLUICED_PATH) as a child process: `sluiced -c <dir>/sluiced.json`, stdout and stderr
// appended to <dir>/sluiced.log. The destructor sends SIGTERM (drain, then exit 0), waits, and
// SIGKILLs if it must; it records a test failure if sluiced died on its own or did not exit 0,
// and prints the log whenever the current test has failed. Start failures throw.
class Sluiced {
 public:
  enum class Wait { ready, none };  // ready: until the client socket accepts connections

  explicit Sluiced(const PoolOptions& options = {}, Wait wait = Wait::ready);
  explicit Sluiced(SluicedConfig config, Wait wait = Wait::ready);
  // The new process of a live upgrade whose old one the test plays: `upgrade_channel` becomes its
  // descriptor 3, the handover channel (sluiced --upgrade-fd 3).
  Sluiced(SluicedConfig config, Wait wait, int upgrade_channel);
  ~Sluiced();
  Sluiced(const Sluiced&) = delete;
  Sluiced& operator=(const Sluiced&) = delete;
  Sluiced(Sluiced&&) = delete;
  Sluiced& operator=(Sluiced&&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& socket_dir() const { return config_.dir.path(); }
  [[nodiscard]] int port() const { return config_.port; }
  [[nodiscard]] std::string socket_path() const;     // <dir>/.s.PGSQL.<port>
  [[nodiscard]] std::string control_socket() const;  // <dir>/control.sock (as default_config sets)
  [[nodiscard]] std::string config_path() const;
  // "host=<dir> port=<port> dbname=<dbname> connect_timeout=10", plus user when given.
  [[nodiscard]] std::string conninfo(const std::string& dbname = "postgres",
                                     const std::string& user = "") const;
  [[nodiscard]] std::string log() const;

  void send_signal(int signo);  // no-op once reaped; an exit after it is expected, not a failure
  // The wait status (as waitpid's, for WIFEXITED & co.) once sluiced has exited, or nullopt if it
  // is still running after `timeout`. Reaps it; later calls return the same status.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  [[nodiscard]] bool alive();

 private:
  void wait_ready();

  SluicedConfig config_;
  pid_t pid_ = -1;
  std::optional<int> status_;   // set once reaped
  bool exit_expected_ = false;  // the test signalled sluiced or waited for its exit
};

// The sluiced binary Sluiced runs: $SLUICE_TEST_SLUICED when set (make test-sanitized runs the
// worker tests against a ThreadSanitizer build that way), else the one built beside the tests.
std::string sluiced_path();

// libpq handles that clean up after themselves.
struct PgConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct PgResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// Connects, or throws std::runtime_error with libpq's message (GoogleTest reports it as a failure).
PgConn connect(const std::string& conninfo);
// Connects without judging: check PQstatus() yourself, e.g. to expect a refusal.
PgConn try_connect(const std::string& conninfo);
// Runs `sql` and returns whatever came back; check PQresultStatus() yourself.
PgResult exec(const PgConn& conn, const std::string& sql);
// Runs `sql` and returns the first column of its only row; throws unless it returned exactly one
// row and one column (the message says what came back instead).
std::string scalar(const PgConn& conn, const std::string& sql);
// Runs `sql` and throws unless it succeeded (COMMAND_OK or TUPLES_OK).
void exec_ok(const PgConn& conn, const std::string& sql);

// What run_capture() saw of a program it ran.
struct Captured {
  int status = 0;                              // the wait status (as waitpid's)
  bool timed_out = false;                      // it outlived the timeout and was SIGKILLed
  std::string out;                             // its standard output
  std::string err;                             // its standard error
  [[nodiscard]] bool succeeded() const;        // exited with 0 by itself
  [[nodiscard]] std::string describe() const;  // "exit code 1", "signal 9 (Killed)", "killed at the timeout"
};

// Runs `argv` (argv[0] a path, or a name looked up in PATH) as the invoking user until it exits,
// stdin /dev/null, stdout and stderr captured apart; `env` ("NAME=value") is added to the
// environment. A program still running after `timeout` is SIGKILLed (timed_out). Throws only when
// it cannot be started; a failed exec shows as exit code 127.
Captured run_capture(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                     const std::vector<std::string>& env = {});

// A TCP port nothing listens on right now (bound to port 0 and released).
int free_tcp_port();

// Polls `predicate` with short waits until it holds or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& predicate,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace harness
