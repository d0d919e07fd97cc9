// Faults (issue 12): a cancel that arrives late never reaches another client's query; nothing
// outside the loop — a stopped postmaster, a full server, closed or stalled stdio — stalls it or
// fails clients that could wait; PostgreSQL's own refusals reach clients as PostgreSQL words them;
// a pool shrunk on reload closes what is above its size.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::PgConn;
using harness::scalar;
using harness::wait_until;
using scope_test::count_of;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kDatabase = "faults";
constexpr const char* kLimitedRole = "faults_limited";  // CONNECTION LIMIT 1: one direct login fills it

// SIGSTOP of PostgreSQL's postmaster for as long as it lives: running backends go on, new
// connections and cancel requests wait in its listen queue.
class PostmasterStopped {
 public:
  PostmasterStopped() : pid_(harness::postgres().pid()) { kill(pid_, SIGSTOP); }
  ~PostmasterStopped() { resume(); }
  PostmasterStopped(const PostmasterStopped&) = delete;
  PostmasterStopped& operator=(const PostmasterStopped&) = delete;
  void resume() {
    if (pid_ > 0) kill(std::exchange(pid_, -1), SIGCONT);
  }

 private:
  pid_t pid_;
};

// Asks sluiced to cancel what `conn` runs, as an application's PQcancel does.
void cancel_through_sluiced(const PgConn& conn) {
  PGcancel* cancel = PQgetCancel(conn.get());
  ASSERT_NE(cancel, nullptr);
  char error[256] = {};
  EXPECT_EQ(PQcancel(cancel, error, sizeof error), 1) << error;
  PQfreeCancel(cancel);
}

json config_of(const harness::Sluiced& sluiced) {
  return json::parse(ctltest::read_text(sluiced.config_path()), nullptr, true, true);
}

// Rewrites the config, reloads, and waits until sluiced says the reload went through.
void reload_with(const harness::Sluiced& sluiced, const json& config,
                 std::chrono::milliseconds timeout = 10s) {
  ctltest::write_text(sluiced.config_path(), config.dump(2));
  const json before = ctltest::status(sluiced.control_socket())["reload"]["last"];
  ASSERT_TRUE(ctltest::control(sluiced.control_socket(), {{"cmd", "reload"}}).value("ok", false));
  const bool applied = wait_until(
      [&] {
        const json last = ctltest::status(sluiced.control_socket())["reload"]["last"];
        return last.is_object() && last != before && last.value("ok", false);
      },
      timeout);
  ASSERT_TRUE(applied) << "the reload did not apply within " << timeout.count()
                       << " ms: " << ctltest::status(sluiced.control_socket()).dump();
}

int pool_waiting(const harness::Sluiced& sluiced) {
  const json pools = ctltest::control(sluiced.control_socket(), {{"cmd", "pools"}});
  int waiting = 0;
  for (const json& row : pools["pools"]) waiting += row["clients"]["waiting"].get<int>();
  return waiting;
}

// What libpq says of a refused login, without the part naming the socket (which differs).
std::string refusal_of(const PGconn* conn) {
  std::string message = PQerrorMessage(conn);
  if (const auto at = message.find("failed: "); at != std::string::npos) message.erase(0, at + 8);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  return message;
}

// A query that must finish within `timeout`: a stalled sluiced fails the test instead of hanging it.
bool query_within(const PgConn& conn, const std::string& sql, std::chrono::milliseconds timeout) {
  if (PQsendQuery(conn.get(), sql.c_str()) != 1) return false;
  const auto result = ctltest::await_result(conn, timeout);
  return result && (PQresultStatus(result->get()) == PGRES_TUPLES_OK ||
                    PQresultStatus(result->get()) == PGRES_COMMAND_OK);
}

class FaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scope_test::ensure_database(kDatabase);
    const PgConn admin = scope_test::direct();
    harness::exec(admin, std::string("create role ") + kLimitedRole + " login connection limit 1");
  }
  void SetUp() override { observer_ = scope_test::direct(kDatabase); }

  // Waits until a backend of the database runs `fragment`.
  bool wait_running(const std::string& fragment, std::size_t how_many = 1) {
    return wait_until([&] {
      std::size_t running = 0;
      for (const auto& backend : scope_test::client_backends(observer_, kDatabase)) {
        if (backend.state == "active" && backend.query.find(fragment) != std::string::npos) ++running;
      }
      return running >= how_many;
    });
  }

  PgConn observer_;
};

// Client A's cancel is held up at a stopped postmaster while A's query ends by itself. Its server
// must not serve B until that cancel has been delivered: on delivery it would stop B's query.
TEST_F(FaultsTest, LateCancelNeverReachesTheNextClient) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1});
  const PgConn a = harness::connect(sluiced.conninfo(kDatabase));
  const PgConn b = harness::connect(sluiced.conninfo(kDatabase));
  ASSERT_EQ(scalar(b, "select 1"), "1");
  ASSERT_EQ(PQsendQuery(a.get(), "select pg_sleep(1)"), 1);
  ASSERT_TRUE(wait_running("pg_sleep(1)"));
  {
    PostmasterStopped stopped;
    cancel_through_sluiced(a);
    const auto a_result = ctltest::await_result(a, 10s);
    ASSERT_TRUE(a_result);
    EXPECT_EQ(PQresultStatus(a_result->get()), PGRES_TUPLES_OK) << "the cancel cannot have arrived yet";
    ASSERT_EQ(PQsendQuery(b.get(), "select pg_sleep(2)"), 1);
    EXPECT_TRUE(wait_until([&] { return pool_waiting(sluiced) == 1; }, 5s))
        << "B got the server whose cancel is still on its way";
  }
  const auto b_result = ctltest::await_result(b, 15s);
  ASSERT_TRUE(b_result);
  EXPECT_EQ(PQresultStatus(b_result->get()), PGRES_TUPLES_OK)
      << "B's query was stopped: " << ctltest::sqlstate(b_result->get()) << " "
      << PQresultErrorMessage(b_result->get());
}

// Five cancels hang at a stopped postmaster. Neither a reload nor the host-name lookup of a new
// server connection may wait for them (libuv's thread pool has four threads).
TEST_F(FaultsTest, StalledCancelsLeaveReloadAndLookupsFree) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 5});
  std::vector<PgConn> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(harness::connect(sluiced.conninfo(kDatabase)));
    ASSERT_EQ(PQsendQuery(clients.back().get(), "select pg_sleep(3)"), 1);
  }
  ASSERT_TRUE(wait_running("pg_sleep(3)", 5));
  PostmasterStopped stopped;
  for (const PgConn& client : clients) cancel_through_sluiced(client);

  json config = config_of(sluiced);
  config["databases"]["byname"] = {{"conninfo", "host=localhost port=1 dbname=nothing"},
                                   {"query_wait_timeout_ms", 1500}};
  reload_with(sluiced, config, 3s);
  const PgConn byname = harness::try_connect(sluiced.conninfo("byname"));
  EXPECT_EQ(PQstatus(byname.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(byname.get())).find("Connection refused"), std::string::npos)
      << "the lookup of localhost did not lead to a connect: " << PQerrorMessage(byname.get());
  stopped.resume();
  for (const PgConn& client : clients) EXPECT_TRUE(ctltest::await_result(client, 15s));
}

// PostgreSQL refuses every new login of the role (its connection limit is reached): clients wait
// while the pool retries at server_login_retry_ms, and are served once a slot is free.
TEST_F(FaultsTest, FullServerMakesClientsWaitAndRetriesAreBounded) {
  harness::Sluiced sluiced(
      {.dbname = kDatabase, .pool_size = 2, .overrides = {{"pool", {{"server_login_retry_ms", 100}}}}});
  PgConn holder = harness::connect(harness::postgres().conninfo(kDatabase, kLimitedRole));
  const std::size_t log_from = sluiced.log().size();
  std::atomic<int> served{0};
  std::vector<std::string> errors(8);
  std::vector<std::thread> clients;
  const auto started = Clock::now();
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      const PgConn conn = harness::try_connect(sluiced.conninfo(kDatabase, kLimitedRole));
      if (PQstatus(conn.get()) != CONNECTION_OK) {
        errors[i] = PQerrorMessage(conn.get());
        return;
      }
      const harness::PgResult result = harness::exec(conn, "select 1");
      if (PQresultStatus(result.get()) == PGRES_TUPLES_OK) {
        ++served;
      } else {
        errors[i] = PQresultErrorMessage(result.get());
      }
    });
  }
  const auto refusals = [&] {
    return count_of(sluiced.log().substr(log_from), "too many connections for role");
  };
  ASSERT_TRUE(wait_until([&] { return refusals() >= 5; }));
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const std::size_t attempts = refusals();
  EXPECT_LE(static_cast<double>(attempts) / seconds, 20.0)
      << attempts << " refused connects in " << seconds << " s";
  holder.reset();
  for (auto& client : clients) client.join();
  EXPECT_EQ(served.load(), 8);
  for (const std::string& error : errors) EXPECT_EQ(error, "");
}

// server_login_retry_ms 0 against a socket that refuses at once: the pool retries on the janitor's
// turns instead of spinning inside one, so the loop (and the control socket) stay free.
TEST_F(FaultsTest, ZeroRetryDelayNeverSpinsTheLoop) {
  const harness::TempDir nowhere("sluice-nopg");
  harness::Sluiced sluiced({.dbname = kDatabase,
                            .overrides = {{"databases",
                                           {{"ghost",
                                             {{"conninfo", "host=" + nowhere.path() + " port=5999"},
                                              {"server_login_retry_ms", 0},
                                              {"query_wait_timeout_ms", 500}}}}}}});
  const auto started = Clock::now();
  const PgConn ghost = harness::try_connect(sluiced.conninfo("ghost"));
  EXPECT_EQ(PQstatus(ghost.get()), CONNECTION_BAD);
  EXPECT_LT(Clock::now() - started, 3s) << PQerrorMessage(ghost.get());
  EXPECT_EQ(ctltest::status(sluiced.control_socket())["state"], "running");
  EXPECT_EQ(scalar(harness::connect(sluiced.conninfo(kDatabase)), "select 1"), "1");
}

// A refusal a direct login would get at once comes at once, in PostgreSQL's words; one that
// persists past query_wait_timeout_ms comes then, in PostgreSQL's words too.
TEST_F(FaultsTest, ClientsGetPostgresRefusalsAsPostgresWordsThem) {
  // A wait out to query_wait_timeout_ms takes far longer than the bound on a refusal at once.
  harness::Sluiced sluiced({.dbname = kDatabase, .overrides = {{"pool", {{"query_wait_timeout_ms", 5000}}}}});
  const PgConn direct_unknown =
      harness::try_connect(harness::postgres().conninfo(kDatabase, "faults_nobody"));
  const auto started = Clock::now();
  const PgConn pooled_unknown = harness::try_connect(sluiced.conninfo(kDatabase, "faults_nobody"));
  EXPECT_LT(Clock::now() - started, 3s) << "a role that does not exist is no reason to wait";
  EXPECT_EQ(refusal_of(pooled_unknown.get()), refusal_of(direct_unknown.get()));

  const PgConn holder = harness::connect(harness::postgres().conninfo(kDatabase, kLimitedRole));
  const PgConn direct_full = harness::try_connect(harness::postgres().conninfo(kDatabase, kLimitedRole));
  const PgConn pooled_full = harness::try_connect(sluiced.conninfo(kDatabase, kLimitedRole));
  EXPECT_EQ(refusal_of(pooled_full.get()), refusal_of(direct_full.get()));

  // libpq's multi-line messages still make one log line each, with time and level.
  const std::regex record(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error): .*)");
  std::istringstream lines(sluiced.log());
  for (std::string line; std::getline(lines, line);) EXPECT_TRUE(std::regex_match(line, record)) << line;
}

// PostgreSQL ends an idle pooled server (pg_terminate_backend): the log says what PostgreSQL said.
TEST_F(FaultsTest, IdleServerClosedByPostgresIsLoggedInItsWords) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 1});
  const PgConn client = harness::connect(sluiced.conninfo(kDatabase));
  const int pid = std::stoi(scalar(client, "select pg_backend_pid()"));
  harness::exec_ok(observer_, "select pg_terminate_backend(" + std::to_string(pid) + ")");
  EXPECT_TRUE(wait_until([&] {
    return sluiced.log().find(
               "PostgreSQL sent FATAL 57P01 terminating connection due to administrator command") !=
           std::string::npos;
  })) << sluiced.log();
  EXPECT_EQ(scalar(client, "select 1"), "1");  // a fresh server serves the next transaction
}

// pool_size 6 → 2 on reload while six servers are in use: they close as they come back.
TEST_F(FaultsTest, ShrunkPoolClosesServersAboveItsSize) {
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 6});
  std::vector<PgConn> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(harness::connect(sluiced.conninfo(kDatabase)));
    harness::exec_ok(clients.back(), "begin");
    harness::exec_ok(clients.back(), "select 1");
  }
  ASSERT_EQ(scope_test::client_backends(observer_, kDatabase).size(), 6U);
  json config = config_of(sluiced);
  config["databases"][kDatabase]["pool_size"] = 2;
  reload_with(sluiced, config);
  for (const PgConn& client : clients) harness::exec_ok(client, "commit");
  EXPECT_TRUE(wait_until([&] { return scope_test::client_backends(observer_, kDatabase).size() <= 2; }))
      << scope_test::describe(scope_test::client_backends(observer_, kDatabase));
  for (const PgConn& client : clients) EXPECT_EQ(scalar(client, "select 1"), "1");
  EXPECT_LE(scope_test::client_backends(observer_, kDatabase).size(), 2U);
}

// ---- stdio ----

// sluiced started by hand with some standard descriptors closed, or stderr a pipe nobody reads.
class RawSluiced {
 public:
  enum class Stdio { all_closed, stderr_closed, stderr_pipe };

  // Debug logging: a record or more per transaction.
  explicit RawSluiced(Stdio stdio)
      : config_(harness::default_config({.dbname = kDatabase, .overrides = {{"log_level", "debug"}}})) {
    const std::string config_path = config_.dir.path() + "/sluiced.json";
    {
      std::ofstream out(config_path);
      out << config_.text;
    }
    int pipe_fds[2] = {-1, -1};
    if (stdio == Stdio::stderr_pipe && pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    const std::string binary = harness::sluiced_path();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test
      if (stdio == Stdio::stderr_pipe) {
        dup2(pipe_fds[1], STDOUT_FILENO);
        dup2(pipe_fds[1], STDERR_FILENO);
      } else {
        if (stdio == Stdio::all_closed) {
          close(STDIN_FILENO);
          close(STDOUT_FILENO);
        }
        close(STDERR_FILENO);
      }
      execl(binary.c_str(), binary.c_str(), "-c", config_path.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pipe_fds[1] >= 0) {
      fcntl(pipe_fds[1], F_SETPIPE_SZ, 4096);  // the smallest pipe: full after a few dozen records
      close(pipe_fds[1]);
    }
    stderr_ = pipe_fds[0];
  }
  ~RawSluiced() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stderr_ >= 0) close(stderr_);
  }
  RawSluiced(const RawSluiced&) = delete;
  RawSluiced& operator=(const RawSluiced&) = delete;

  // A client once sluiced accepts one.
  PgConn connect() const {
    const std::string conninfo = "host=" + config_.dir.path() + " port=" + std::to_string(config_.port) +
                                 " dbname=" + kDatabase + " connect_timeout=5";
    PgConn client;
    wait_until([&] {
      client = harness::try_connect(conninfo);
      return PQstatus(client.get()) == CONNECTION_OK;
    });
    return client;
  }
  [[nodiscard]] std::string control_socket() const { return config_.dir.path() + "/control.sock"; }

  // SIGTERM, then the wait status once it exits (nullopt if it outlives `timeout`).
  std::optional<int> terminate(std::chrono::milliseconds timeout) {
    kill(pid_, SIGTERM);
    wait_until(
        [&] {
          int status = 0;
          if (waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
          return status_.has_value();
        },
        timeout);
    return status_;
  }
  // Reads what sluiced wrote to the pipe until `needle` shows up or `timeout` passes.
  bool read_stderr_until(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string seen;
    char buffer[65536];
    while (Clock::now() < deadline) {
      pollfd ready{.fd = stderr_, .events = POLLIN, .revents = 0};
      if (poll(&ready, 1, 100) <= 0) continue;
      const ssize_t n = read(stderr_, buffer, sizeof buffer);
      if (n <= 0) return false;
      seen.append(buffer, static_cast<std::size_t>(n));
      if (seen.find(needle) != std::string::npos) return true;
      if (seen.size() > needle.size()) seen.erase(0, seen.size() - needle.size());
    }
    return false;
  }

 private:
  harness::SluicedConfig config_;
  pid_t pid_ = -1;
  int stderr_ = -1;
  std::optional<int> status_;
};

class FaultsStdioTest : public ::testing::TestWithParam<RawSluiced::Stdio> {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }
};

// Started with descriptors 0–2 closed (or only 2), sluiced must not log into whatever took their
// numbers: hundreds of debug lines later it still serves, and SIGTERM still ends it with 0.
TEST_P(FaultsStdioTest, ClosedStandardDescriptorsAreHarmless) {
  RawSluiced sluiced(GetParam());
  PgConn client = sluiced.connect();
  ASSERT_EQ(PQstatus(client.get()), CONNECTION_OK) << PQerrorMessage(client.get());
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(query_within(client, "select 1", 5s)) << "query " << i;
  client.reset();
  const auto status = sluiced.terminate(10s);
  ASSERT_TRUE(status) << "sluiced did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

INSTANTIATE_TEST_SUITE_P(Stdio, FaultsStdioTest,
                         ::testing::Values(RawSluiced::Stdio::all_closed, RawSluiced::Stdio::stderr_closed));

// stderr is a pipe nobody reads: once it is full, traffic and the control socket go on, records
// are dropped and counted, and the count is written once the pipe is read again.
TEST(FaultsLogTest, StalledStderrNeverStallsTheLoop) {
  scope_test::ensure_database(kDatabase);
  RawSluiced sluiced(RawSluiced::Stdio::stderr_pipe);
  PgConn client = sluiced.connect();
  ASSERT_EQ(PQstatus(client.get()), CONNECTION_OK) << PQerrorMessage(client.get());
  // ~100 bytes of debug log per transaction: past the pipe (4 KiB) and the log queue (256 KiB).
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(query_within(client, "select 1", 5s)) << "query " << i;
  EXPECT_EQ(ctltest::status(sluiced.control_socket())["state"], "running");
  EXPECT_TRUE(sluiced.read_stderr_until("log records dropped: stderr was not writable", 10s));
  client.reset();
  const auto status = sluiced.terminate(10s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

}  // namespace
