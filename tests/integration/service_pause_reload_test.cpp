// Operating sluiced as a service (DESIGN §3, §5; issue 3 §4–6, §8): pause/resume, SIGHUP reload
// with a good and a broken file, sd_notify READY/RELOADING/STOPPING on a test NOTIFY_SOCKET, and
// the systemd unit checked by systemd-analyze where it is installed.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"
#include "tests/integration/upgrade_helpers.h"

#ifndef SLUICED_PATH
#error "SLUICED_PATH must name the sluiced binary (CMakeLists.txt defines it)"
#endif

namespace {

using ctltest::read_text;
using ctltest::write_text;
using harness::PgConn;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// SIGHUP without telling the harness an exit is expected: a crash on reload still fails the test.
void send_sighup(const harness::Sluiced& daemon) { ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0); }

// Waits for status.reload.last to satisfy `done`; returns it (null if it never did).
json wait_for_reload(const harness::Sluiced& daemon, const std::function<bool(const json&)>& done) {
  json last;
  const bool seen = harness::wait_until([&] {
    last = ctltest::status(daemon.control_socket())["reload"]["last"];
    return !last.is_null() && done(last);
  });
  return seen ? last : json();
}

json find_pool(const json& pools, const std::string& database) {
  for (const json& pool : pools["pools"]) {
    if (pool.value("database", "") == database) return pool;
  }
  return json();
}

// ---- pause / resume ------------------------------------------------------------------------

TEST(ServicePauseTest, PausedQueriesWaitWithoutErrorsAndResumeServesThem) {
  harness::Sluiced daemon({.pool_size = 2});
  const std::string socket = daemon.control_socket();
  const PgConn in_tx = harness::connect(daemon.conninfo());
  const PgConn waiter = harness::connect(daemon.conninfo());
  const ctltest::NoticeLog waiter_notices(waiter);
  harness::exec_ok(in_tx, "BEGIN");
  EXPECT_EQ(harness::scalar(in_tx, "SELECT 1"), "1");

  const json paused = ctltest::control(socket, {{"cmd", "pause"}});
  EXPECT_EQ(paused.value("ok", false), true) << paused.dump();
  EXPECT_EQ(paused.value("state", ""), "paused") << paused.dump();
  EXPECT_EQ(ctltest::status(socket).value("state", ""), "paused");

  // A scope in flight finishes while paused.
  EXPECT_EQ(harness::scalar(in_tx, "SELECT 2"), "2");
  harness::exec_ok(in_tx, "COMMIT");

  // A new transaction waits: no result, no error, for as long as we look.
  ASSERT_EQ(PQsendQuery(waiter.get(), "SELECT 40 + 2"), 1);
  json status;
  EXPECT_TRUE(harness::wait_until([&] {
    status = ctltest::status(socket);
    return status["clients"].value("waiting", 0) == 1;
  })) << "the paused query is not counted as waiting: "
      << status.dump();
  const auto watch_until = Clock::now() + 300ms;
  bool stayed_busy = true;
  while (Clock::now() < watch_until && stayed_busy) {
    stayed_busy = PQconsumeInput(waiter.get()) == 1 && PQisBusy(waiter.get()) == 1 &&
                  PQstatus(waiter.get()) == CONNECTION_OK;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(stayed_busy) << "the query completed or failed while paused: " << PQerrorMessage(waiter.get());
  EXPECT_EQ(waiter_notices.describe(), "(no notices)");

  const json resumed = ctltest::control(socket, {{"cmd", "resume"}});
  EXPECT_EQ(resumed.value("state", ""), "running") << resumed.dump();
  const auto result = ctltest::await_result(waiter, 5s);
  ASSERT_TRUE(result.has_value()) << "the waiting query never completed after resume";
  ASSERT_EQ(PQresultStatus(result->get()), PGRES_TUPLES_OK) << PQresultErrorMessage(result->get());
  EXPECT_EQ(PQgetvalue(result->get(), 0, 0), std::string("42"));
  EXPECT_EQ(harness::scalar(in_tx, "SELECT 3"), "3");
  EXPECT_EQ(ctltest::status(socket).value("state", ""), "running");
}

// ---- reload ----------------------------------------------------------------------------------

class ServiceReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    harness::exec_ok(in_tx, "BEGIN");
    harness::exec_ok(in_tx, "CREATE TEMP TABLE reload_probe (x int) ON COMMIT DROP");
    harness::exec_ok(in_tx, "INSERT INTO reload_probe VALUES (1)");
    in_tx_backend = harness::scalar(in_tx, "SELECT pg_backend_pid()");
    EXPECT_EQ(harness::scalar(idle, "SELECT 1"), "1");
  }

  // The two clients were not disturbed: in_tx is still in its transaction, on its backend.
  void expect_clients_unaffected() {
    EXPECT_EQ(harness::scalar(in_tx, "SELECT count(*) FROM reload_probe"), "1");
    EXPECT_EQ(harness::scalar(in_tx, "SELECT pg_backend_pid()"), in_tx_backend);
    harness::exec_ok(in_tx, "COMMIT");
    EXPECT_EQ(harness::scalar(idle, "SELECT 'idle ok'"), "idle ok");
    EXPECT_EQ(in_tx_notices.describe(), "(no notices)");
    EXPECT_EQ(idle_notices.describe(), "(no notices)");
  }

  harness::Sluiced daemon{{.pool_size = 4}};
  PgConn in_tx = harness::connect(daemon.conninfo());
  PgConn idle = harness::connect(daemon.conninfo());
  ctltest::NoticeLog in_tx_notices{in_tx};
  ctltest::NoticeLog idle_notices{idle};
  std::string in_tx_backend;
};

TEST_F(ServiceReloadTest, GoodFileAddsADatabaseAndResizesWithoutDroppingClients) {
  const PgConn before = harness::try_connect(daemon.conninfo("reload_alias"));
  ASSERT_NE(PQstatus(before.get()), CONNECTION_OK) << "reload_alias exists before the reload";

  json config = json::parse(read_text(daemon.config_path()));
  const std::string pg = harness::postgres().conninfo("postgres");  // an alias for the postgres database
  config["databases"]["reload_alias"] = {{"conninfo", pg}, {"pool_size", 2}};
  config["databases"]["postgres"]["pool_size"] = 6;
  write_text(daemon.config_path(), config.dump(2) + "\n");
  send_sighup(daemon);

  const json last = wait_for_reload(daemon, [](const json&) { return true; });
  ASSERT_FALSE(last.is_null()) << "status.reload.last never appeared after SIGHUP";
  EXPECT_EQ(last.value("ok", false), true) << last.dump();
  EXPECT_TRUE(last["error"].is_null()) << last.dump();

  const PgConn fresh = harness::connect(daemon.conninfo("reload_alias"));
  EXPECT_EQ(harness::scalar(fresh, "SELECT current_database()"), "postgres");
  const json pools = ctltest::control(daemon.control_socket(), {{"cmd", "pools"}});
  EXPECT_EQ(find_pool(pools, "postgres").value("pool_size", 0), 6) << "resized in place: " << pools.dump();
  EXPECT_EQ(find_pool(pools, "reload_alias").value("pool_size", 0), 2) << pools.dump();
  EXPECT_EQ(ctltest::status(daemon.control_socket())["clients"].value("total", 0), 3);

  expect_clients_unaffected();
  EXPECT_TRUE(daemon.alive());
}

// A database the file no longer names takes no new login, even one for the very pool the last login
// was given (pool_for remembers it); its clients stay until they leave (Worker::apply_config).
TEST_F(ServiceReloadTest, ARemovedDatabaseRefusesNewLoginsAndKeepsItsClients) {
  json config = json::parse(read_text(daemon.config_path()));
  config["databases"]["reload_alias"] = {{"conninfo", harness::postgres().conninfo("postgres")}};
  config["databases"].erase("postgres");
  write_text(daemon.config_path(), config.dump(2) + "\n");
  send_sighup(daemon);
  const json last = wait_for_reload(daemon, [](const json&) { return true; });
  ASSERT_FALSE(last.is_null()) << "status.reload.last never appeared after SIGHUP";
  ASSERT_EQ(last.value("ok", false), true) << last.dump();

  const PgConn removed = harness::try_connect(daemon.conninfo());
  EXPECT_EQ(PQstatus(removed.get()), CONNECTION_BAD);
  EXPECT_NE(std::string(PQerrorMessage(removed.get())).find("database \"postgres\" does not exist"),
            std::string::npos)
      << PQerrorMessage(removed.get());
  EXPECT_EQ(harness::scalar(harness::connect(daemon.conninfo("reload_alias")), "SELECT 1"), "1");
  expect_clients_unaffected();
}

// Database "app" first on reload_target_a, then reloaded onto reload_target_b, a database with its
// own time zone (a ParameterStatus a welcome must carry).
class ServiceReloadTargetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scope_test::ensure_database("reload_target_a");
    scope_test::ensure_database("reload_target_b");
    harness::exec_ok(harness::connect(harness::postgres().conninfo()),
                     "ALTER DATABASE reload_target_b SET TimeZone = 'Asia/Tokyo'");
  }
  static harness::SluicedConfig config_on_target_a(int pool_size) {
    return harness::default_config(
        {.dbname = "app",
         .pool_size = pool_size,
         .overrides = {
             {"databases", {{"app", {{"conninfo", harness::postgres().conninfo("reload_target_a")}}}}}}});
  }
  // Rewrites the config with "app" on reload_target_b and reloads it; the reload's outcome.
  static json reload_onto_target_b(const harness::Sluiced& daemon) {
    json config = json::parse(read_text(daemon.config_path()));
    config["databases"]["app"]["conninfo"] = harness::postgres().conninfo("reload_target_b");
    write_text(daemon.config_path(), config.dump(2) + "\n");
    send_sighup(daemon);
    return wait_for_reload(daemon, [](const json&) { return true; });
  }
  static std::string time_zone(const PgConn& conn) { return PQparameterStatus(conn.get(), "TimeZone"); }
};

// A reload that points a database at another server: the welcome's parameters come from the new
// target's servers, as a direct login there reports them, not from the pool's first server before
// the reload.
TEST_F(ServiceReloadTargetTest, ANewTargetsParametersReachTheNextWelcome) {
  harness::Sluiced daemon(config_on_target_a(4));
  const PgConn before = harness::connect(daemon.conninfo("app"));
  EXPECT_EQ(time_zone(before), time_zone(harness::connect(harness::postgres().conninfo("reload_target_a"))));
  ASSERT_NE(time_zone(before), "Asia/Tokyo");

  const json last = reload_onto_target_b(daemon);
  ASSERT_FALSE(last.is_null()) << "status.reload.last never appeared after SIGHUP";
  ASSERT_EQ(last.value("ok", false), true) << last.dump();

  const PgConn after = harness::connect(daemon.conninfo("app"));
  EXPECT_EQ(time_zone(after), time_zone(harness::connect(harness::postgres().conninfo("reload_target_b"))));
  EXPECT_EQ(time_zone(after), "Asia/Tokyo");
  EXPECT_EQ(harness::scalar(after, "SELECT current_database() || ' ' || current_setting('TimeZone')"),
            "reload_target_b Asia/Tokyo");
}

// A server busy when the reload changed the conninfo is closed at its release, not kept for the
// next clients: a login that waited meanwhile gets a server of the new target and its parameters.
TEST_F(ServiceReloadTargetTest, AServerOfTheOldTargetIsClosedAtItsRelease) {
  harness::Sluiced daemon(config_on_target_a(1));
  const PgConn busy = harness::connect(daemon.conninfo("app"));
  harness::exec_ok(busy, "BEGIN");
  EXPECT_EQ(harness::scalar(busy, "SELECT current_database()"), "reload_target_a");

  const json last = reload_onto_target_b(daemon);
  ASSERT_EQ(last.value("ok", false), true) << last.dump();

  // pool_size 1, held by `busy`: the login waits for it.
  auto login = std::async(std::launch::async, [&] { return harness::try_connect(daemon.conninfo("app")); });
  ASSERT_EQ(login.wait_for(300ms), std::future_status::timeout) << "logged in without a server";
  harness::exec_ok(busy, "COMMIT");
  ASSERT_EQ(login.wait_for(10s), std::future_status::ready);
  const PgConn after = login.get();
  ASSERT_EQ(PQstatus(after.get()), CONNECTION_OK) << PQerrorMessage(after.get());
  EXPECT_EQ(time_zone(after), "Asia/Tokyo");
  EXPECT_EQ(harness::scalar(after, "SELECT current_database()"), "reload_target_b");
  EXPECT_EQ(harness::scalar(busy, "SELECT current_database()"), "reload_target_b");
  EXPECT_TRUE(daemon.alive());
}

TEST_F(ServiceReloadTest, BrokenFileIsRejectedAndTheOldConfigServes) {
  // Line 2 of the file is broken.
  const std::string good = read_text(daemon.config_path());
  const auto first_newline = good.find('\n');
  ASSERT_NE(first_newline, std::string::npos);
  write_text(daemon.config_path(),
             good.substr(0, first_newline + 1) + "  \"pool\": ,\n" + good.substr(first_newline + 1));
  send_sighup(daemon);

  const json last = wait_for_reload(daemon, [](const json&) { return true; });
  ASSERT_FALSE(last.is_null()) << "status.reload.last never appeared after SIGHUP";
  EXPECT_EQ(last.value("ok", true), false) << last.dump();
  ASSERT_TRUE(last["error"].is_string()) << last.dump();
  const std::string error = last["error"];
  EXPECT_TRUE(std::regex_search(error, std::regex(R"((:2:|line 2\b))")))
      << "the error names line 2: " << error;
  EXPECT_NE(daemon.log().find("reload"), std::string::npos);

  // The running config still serves, old clients and new ones alike.
  EXPECT_EQ(ctltest::status(daemon.control_socket()).value("state", ""), "running");
  const PgConn fresh = harness::connect(daemon.conninfo());
  EXPECT_EQ(harness::scalar(fresh, "SELECT 'fresh ok'"), "fresh ok");
  const json pools = ctltest::control(daemon.control_socket(), {{"cmd", "pools"}});
  EXPECT_EQ(find_pool(pools, "postgres").value("pool_size", 0), 4) << pools.dump();

  // A well-formed file with a bad value is rejected too, naming the key.
  json config = json::parse(good);
  config["databases"]["postgres"]["pool_mode"] = "sometimes";
  config["databases"]["postgres"]["pool_size"] = 9;
  write_text(daemon.config_path(), config.dump(2) + "\n");
  send_sighup(daemon);
  const json invalid = wait_for_reload(daemon, [](const json& l) {
    return l["error"].is_string() && l["error"].get<std::string>().find("pool_mode") != std::string::npos;
  });
  EXPECT_FALSE(invalid.is_null()) << "the bad pool_mode was not reported: "
                                  << ctltest::status(daemon.control_socket())["reload"].dump();
  EXPECT_EQ(find_pool(ctltest::control(daemon.control_socket(), {{"cmd", "pools"}}), "postgres")
                .value("pool_size", 0),
            4)
      << "nothing of a rejected file applies";

  expect_clients_unaffected();

  // And a good file after the bad ones applies.
  config["databases"]["postgres"]["pool_mode"] = "transaction";
  write_text(daemon.config_path(), config.dump(2) + "\n");
  send_sighup(daemon);
  EXPECT_FALSE(wait_for_reload(daemon, [](const json& l) { return l.value("ok", false); }).is_null());
  EXPECT_EQ(find_pool(ctltest::control(daemon.control_socket(), {{"cmd", "pools"}}), "postgres")
                .value("pool_size", 0),
            9);
  EXPECT_TRUE(daemon.alive());
}

// ---- sd_notify -------------------------------------------------------------------------------

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  NotifySocket() : path_(dir_.path() + "/notify.sock") {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
      throw std::runtime_error("bind");
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }

  // Reads datagrams until one has the line `wanted`, or `timeout` passes. Every line read is kept.
  bool wait_for(const std::string& wanted, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      for (std::size_t i = consumed_; i < lines_.size(); ++i) {
        if (lines_[i] == wanted) {
          consumed_ = i + 1;
          return true;
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return false;
      receive(left);
    }
  }

  // Waits up to `timeout` for one datagram and keeps its lines.
  void receive(std::chrono::milliseconds timeout) {
    pollfd wake{.fd = fd_, .events = POLLIN, .revents = 0};
    if (::poll(&wake, 1, static_cast<int>(timeout.count())) <= 0) return;
    char buffer[8192];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n <= 0) return;
    std::istringstream message(std::string(buffer, static_cast<std::size_t>(n)));
    for (std::string line; std::getline(message, line);) lines_.push_back(line);
  }

  [[nodiscard]] std::string seen() const {
    std::string text;
    for (const auto& line : lines_) text += line + " | ";
    return text;
  }
  [[nodiscard]] bool any_starts_with(const std::string& prefix) const {
    return std::any_of(lines_.begin(), lines_.end(),
                       [&](const std::string& l) { return l.starts_with(prefix); });
  }

 private:
  harness::TempDir dir_{"sluice-notify"};
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> lines_;
  std::size_t consumed_ = 0;  // lines before this were matched already
};

// sluiced started with NOTIFY_SOCKET pointing at `notify` (it inherits our environment: the variable
// is set only around the start).
std::unique_ptr<harness::Sluiced> start_notifying(const NotifySocket& notify) {
  if (::setenv("NOTIFY_SOCKET", notify.path().c_str(), 1) != 0)
    throw std::runtime_error("setenv NOTIFY_SOCKET");
  try {
    auto daemon = std::make_unique<harness::Sluiced>(harness::PoolOptions{}, harness::Sluiced::Wait::none);
    ::unsetenv("NOTIFY_SOCKET");
    return daemon;
  } catch (...) {
    ::unsetenv("NOTIFY_SOCKET");
    throw;
  }
}

TEST(ServiceNotifyTest, ReadyReloadingAndStoppingReachNotifySocket) {
  NotifySocket notify;
  const auto daemon = start_notifying(notify);

  ASSERT_TRUE(notify.wait_for("READY=1", 20s)) << "no READY=1; got: " << notify.seen();
  // READY=1 means listening: a client gets in at once, no retry.
  const PgConn client = harness::connect(daemon->conninfo());
  EXPECT_EQ(harness::scalar(client, "SELECT 1"), "1");

  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  EXPECT_TRUE(notify.wait_for("RELOADING=1")) << "no RELOADING=1 on SIGHUP; got: " << notify.seen();
  EXPECT_TRUE(notify.wait_for("READY=1")) << "no READY=1 after the reload; got: " << notify.seen();

  EXPECT_TRUE(harness::wait_until(
      [&] {
        notify.receive(50ms);
        return notify.any_starts_with("STATUS=");
      },
      5s))
      << "no STATUS= summary; got: " << notify.seen();

  daemon->send_signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1"))
      << "no STOPPING=1 when the drain started; got: " << notify.seen();
  const auto exit_status = daemon->wait_exit(10s);
  ASSERT_TRUE(exit_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << "wait status " << *exit_status;
}

// A live upgrade hands the unit over: the new process tells systemd it is the main process now
// (MAINPID=, which the unit's NotifyAccess=all lets it send) and ready, and the old one exits 0.
TEST(ServiceNotifyTest, ALiveUpgradeTellsSystemdTheNewMainPid) {
  upgradetest::become_subreaper();  // the new process is ours to reap once the old one exits
  NotifySocket notify;
  // Declared first, stopped last: only once the old process has exited (its destructor, should an
  // assertion end the test early) is the new one this process's child, which it can reap.
  std::optional<upgradetest::NewProcess> successor;
  const auto daemon = start_notifying(notify);
  ASSERT_TRUE(notify.wait_for("READY=1", 20s)) << "no READY=1; got: " << notify.seen();

  daemon->send_signal(SIGUSR2);
  pid_t new_pid = 0;
  ASSERT_TRUE(harness::wait_until(
      [&] {
        new_pid = ctltest::status(daemon->control_socket()).at("pid").get<pid_t>();
        return new_pid != daemon->pid();
      },
      20s))
      << daemon->log();
  successor.emplace(new_pid);
  EXPECT_TRUE(notify.wait_for("MAINPID=" + std::to_string(new_pid), 10s)) << notify.seen();
  EXPECT_TRUE(notify.wait_for("READY=1")) << "no READY=1 with the new MAINPID; got: " << notify.seen();
  const auto exit_status = daemon->wait_exit(20s);
  ASSERT_TRUE(exit_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << "wait status " << *exit_status;
}

// ---- the systemd unit ------------------------------------------------------------------------

std::optional<std::string> systemd_analyze() {
  for (const char* candidate : {"/usr/bin/systemd-analyze", "/bin/systemd-analyze"}) {
    if (::access(candidate, X_OK) == 0) return std::string(candidate);
  }
  return std::nullopt;
}

// systemd/sluice.service with its binaries pointed at the freshly built sluiced, in a temp dir.
std::string unit_copy(const harness::TempDir& dir) {
  // This file is tests/integration/ in the source tree.
  const auto source_dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  std::string unit = read_text((source_dir / "systemd" / "sluice.service").string());
  if (unit.empty()) throw std::runtime_error("systemd/sluice.service is missing or empty");
  const std::string installed = "/usr/local/bin/sluiced";
  for (auto at = unit.find(installed); at != std::string::npos; at = unit.find(installed, at)) {
    unit.replace(at, installed.size(), SLUICED_PATH);
    at += std::strlen(SLUICED_PATH);
  }
  const std::string path = dir.path() + "/sluice.service";
  write_text(path, unit);
  return path;
}

std::string describe(const ctltest::ProcessResult& result) {
  return "exit " + std::to_string(result.exit_code) + "\n--- stdout ---\n" + result.out + "--- stderr ---\n" +
         result.err;
}

TEST(ServiceUnitTest, SystemdAnalyzeVerifyAcceptsTheUnit) {
  const auto tool = systemd_analyze();
  if (!tool) GTEST_SKIP() << "systemd-analyze is not installed";
  const harness::TempDir dir("sluice-unit");
  const std::string unit = unit_copy(dir);
  const auto result = ctltest::run_process({*tool, "verify", unit}, {.env = {"SYSTEMD_PAGER=cat"}});
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_EQ((result.out + result.err).find("sluice.service:"), std::string::npos)
      << "systemd-analyze complains about the unit:\n"
      << describe(result);
}

TEST(ServiceUnitTest, SecurityExposureIsAtMostTwo) {
  const auto tool = systemd_analyze();
  if (!tool) GTEST_SKIP() << "systemd-analyze is not installed";
  const harness::TempDir dir("sluice-unit");
  const std::string unit = unit_copy(dir);
  const auto result = ctltest::run_process({*tool, "security", "--offline=yes", "--no-pager", unit},
                                           {.env = {"SYSTEMD_PAGER=cat"}});
  std::smatch match;
  const std::string output = result.out + result.err;
  ASSERT_TRUE(
      std::regex_search(output, match, std::regex(R"(Overall exposure level for [^:]+: ([0-9]+\.[0-9]+))")))
      << "no exposure level in the output:\n"
      << describe(result);
  const double exposure = std::stod(match[1].str());
  EXPECT_LE(exposure, 2.0) << describe(result);
}

}  // namespace
