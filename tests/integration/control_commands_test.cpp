// The control socket (DESIGN §4, issue 3 §1–2): every command's JSON shape with real clients
// connected, bad input answered with {"error": ...}, and peers that are not allowed refused.
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

namespace {

using harness::PgConn;
using nlohmann::json;
using namespace std::chrono_literals;

enum class Kind {
  string,
  integer,
  number,
  boolean,
  object,
  array,
  null_or_number,
  null_or_object,
  null_or_string
};

bool matches(const json& value, Kind kind) {
  switch (kind) {
    case Kind::string:
      return value.is_string();
    case Kind::integer:
      return value.is_number_integer();
    case Kind::number:
      return value.is_number();
    case Kind::boolean:
      return value.is_boolean();
    case Kind::object:
      return value.is_object();
    case Kind::array:
      return value.is_array();
    case Kind::null_or_number:
      return value.is_null() || value.is_number();
    case Kind::null_or_object:
      return value.is_null() || value.is_object();
    case Kind::null_or_string:
      return value.is_null() || value.is_string();
  }
  return false;
}

// Every listed key is present with the listed type.
::testing::AssertionResult has_shape(const json& object,
                                     const std::vector<std::pair<std::string, Kind>>& fields) {
  if (!object.is_object()) return ::testing::AssertionFailure() << "not an object: " << object.dump();
  std::string problems;
  for (const auto& [key, kind] : fields) {
    const auto it = object.find(key);
    if (it == object.end()) {
      problems += " missing '" + key + "';";
    } else if (!matches(*it, kind)) {
      problems += " '" + key + "' has the wrong type (" + it->type_name() + ");";
    }
  }
  if (problems.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << problems << " in " << object.dump();
}

::testing::AssertionResult is_error(const json& answer) {
  if (answer.is_object() && answer.size() == 1 && answer.contains("error") && answer["error"].is_string() &&
      !answer["error"].get<std::string>().empty()) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "expected {\"error\": \"...\"}, got " << answer.dump();
}

json parse_line(const std::optional<std::string>& line) {
  if (!line) return json("<no line: connection closed or timed out>");
  auto parsed = json::parse(*line, nullptr, false);
  return parsed.is_discarded() ? json("<not JSON: " + line->substr(0, 200) + ">") : parsed;
}

std::string current_user() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "";
}

// A daemon with two clients: `in_tx` inside a transaction (an active client holding an active
// server), `idle` between transactions. in_tx_backend_pid is pg_backend_pid() as in_tx sees it.
class ControlCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    in_tx = harness::connect(daemon.conninfo());
    idle = harness::connect(daemon.conninfo());
    harness::exec_ok(in_tx, "BEGIN");
    in_tx_backend_pid = std::stoi(harness::scalar(in_tx, "SELECT pg_backend_pid()"));
    // Runs while in_tx holds its server: a second server, idle again once this returns.
    ASSERT_EQ(harness::scalar(idle, "SELECT 41 + 1"), "42");
  }

  json status() { return ctltest::status(daemon.control_socket()); }

  harness::Sluiced daemon{{.pool_size = 4}};
  PgConn in_tx;
  PgConn idle;
  int in_tx_backend_pid = 0;
};

TEST_F(ControlCommandsTest, StatusShapeAndCountsReflectClients) {
  json answer;
  const bool settled = harness::wait_until([&] {
    answer = status();
    return answer.is_object() && answer.contains("clients") && answer["clients"].value("active", -1) == 1 &&
           answer["clients"].value("idle", -1) == 1 && answer["servers"].value("active", -1) == 1;
  });
  EXPECT_TRUE(settled) << "status never showed 1 active + 1 idle client and 1 active server: "
                       << answer.dump();

  ASSERT_TRUE(has_shape(answer, {{"state", Kind::string},
                                 {"version", Kind::string},
                                 {"pid", Kind::integer},
                                 {"uptime_s", Kind::number},
                                 {"workers", Kind::integer},
                                 {"clients", Kind::object},
                                 {"servers", Kind::object},
                                 {"drain", Kind::object},
                                 {"loop", Kind::object},
                                 {"teardown", Kind::object},
                                 {"fds", Kind::integer},
                                 {"reload", Kind::object}}));
  EXPECT_EQ(answer["state"], "running");
  EXPECT_EQ(answer["workers"], 1);
  EXPECT_FALSE(answer["version"].get<std::string>().empty());
  EXPECT_EQ(answer["pid"].get<long long>(), daemon.pid());
  EXPECT_GE(answer["uptime_s"].get<double>(), 0.0);
  EXPECT_GT(answer["fds"].get<long long>(), 2);

  const json& clients = answer["clients"];
  ASSERT_TRUE(has_shape(clients, {{"active", Kind::integer},
                                  {"idle", Kind::integer},
                                  {"waiting", Kind::integer},
                                  {"login", Kind::integer},
                                  {"total", Kind::integer}}));
  EXPECT_EQ(clients["active"], 1) << clients.dump();
  EXPECT_EQ(clients["idle"], 1) << clients.dump();
  EXPECT_EQ(clients["waiting"], 0) << clients.dump();
  EXPECT_EQ(clients["login"], 0) << clients.dump();
  EXPECT_EQ(clients["total"], 2) << clients.dump();

  const json& servers = answer["servers"];
  ASSERT_TRUE(has_shape(servers, {{"active", Kind::integer},
                                  {"idle", Kind::integer},
                                  {"connecting", Kind::integer},
                                  {"resetting", Kind::integer},
                                  {"departing", Kind::integer},
                                  {"total", Kind::integer}}));
  EXPECT_EQ(servers["active"], 1) << servers.dump();
  EXPECT_GE(servers["idle"].get<int>(), 1) << "idle's query needed a second server: " << servers.dump();
  EXPECT_EQ(servers["total"].get<int>(), servers["active"].get<int>() + servers["idle"].get<int>() +
                                             servers["connecting"].get<int>() +
                                             servers["resetting"].get<int>())
      << servers.dump();

  const json& drain = answer["drain"];
  ASSERT_TRUE(has_shape(drain, {{"started", Kind::boolean},
                                {"elapsed_s", Kind::null_or_number},
                                {"deadline_in_s", Kind::null_or_number},
                                {"scopes_remaining", Kind::integer},
                                {"clients_remaining", Kind::integer},
                                {"forced", Kind::integer}}));
  EXPECT_FALSE(drain["started"].get<bool>());
  EXPECT_EQ(drain["forced"], 0);

  ASSERT_TRUE(has_shape(answer["loop"], {{"lag_ms", Kind::number},
                                         {"max_lag_ms", Kind::number},
                                         {"slow_callbacks", Kind::integer},
                                         {"turns", Kind::integer}}));
  EXPECT_GE(answer["loop"]["max_lag_ms"].get<double>(), answer["loop"]["lag_ms"].get<double>() - 1e-9);
  EXPECT_GT(answer["loop"]["turns"].get<long long>(), 0) << "the loop has polled to serve these clients";
  ASSERT_TRUE(
      has_shape(answer["teardown"],
                {{"sla_ms", Kind::number}, {"releases", Kind::integer}, {"violations", Kind::integer}}));
  EXPECT_GE(answer["teardown"]["releases"].get<long long>(), 1) << "idle's query was released";
  ASSERT_TRUE(answer["reload"].contains("last")) << answer["reload"].dump();
  EXPECT_TRUE(answer["reload"]["last"].is_null()) << "no reload yet: " << answer["reload"].dump();

  // The counts follow the clients: in_tx commits and becomes idle.
  harness::exec_ok(in_tx, "COMMIT");
  EXPECT_TRUE(harness::wait_until([&] {
    answer = status();
    return answer["clients"]["active"] == 0 && answer["clients"]["idle"] == 2 &&
           answer["servers"]["active"] == 0;
  })) << answer.dump();
  // A third client, fresh, counts too; gone again once it leaves.
  {
    const PgConn third = harness::connect(daemon.conninfo());
    EXPECT_TRUE(harness::wait_until([&] { return status()["clients"]["total"] == 3; })) << status().dump();
  }
  EXPECT_TRUE(harness::wait_until([&] { return status()["clients"]["total"] == 2; })) << status().dump();
}

TEST_F(ControlCommandsTest, PoolsShape) {
  json answer;
  json pool;
  const bool settled = harness::wait_until([&] {
    answer = ctltest::control(daemon.control_socket(), {{"cmd", "pools"}});
    if (!answer.contains("pools") || !answer["pools"].is_array() || answer["pools"].size() != 1) return false;
    pool = answer["pools"][0];
    return pool["clients"]["active"] == 1 && pool["clients"]["idle"] == 1 && pool["servers"]["active"] == 1;
  });
  ASSERT_TRUE(settled) << answer.dump();
  ASSERT_TRUE(has_shape(pool, {{"database", Kind::string},
                               {"user", Kind::string},
                               {"mode", Kind::string},
                               {"pool_size", Kind::integer},
                               {"clients", Kind::object},
                               {"servers", Kind::object},
                               {"longest_wait_ms", Kind::number}}));
  EXPECT_EQ(pool["database"], "postgres");
  EXPECT_EQ(pool["user"], current_user());
  EXPECT_EQ(pool["mode"], "transaction");
  EXPECT_EQ(pool["pool_size"], 4);
  ASSERT_TRUE(has_shape(pool["clients"],
                        {{"active", Kind::integer}, {"idle", Kind::integer}, {"waiting", Kind::integer}}));
  EXPECT_EQ(pool["clients"]["waiting"], 0);
  ASSERT_TRUE(has_shape(pool["servers"], {{"active", Kind::integer},
                                          {"idle", Kind::integer},
                                          {"connecting", Kind::integer},
                                          {"resetting", Kind::integer},
                                          {"departing", Kind::integer}}));
  EXPECT_GE(pool["servers"]["idle"].get<int>(), 1);
  EXPECT_EQ(pool["longest_wait_ms"].get<double>(), 0.0) << "nobody waits";
  // Logins queue while the first servers connect: counted too.
  ASSERT_TRUE(has_shape(pool["waits"], {{"count", Kind::integer}, {"total_ms", Kind::number}}));
}

TEST_F(ControlCommandsTest, ClientsShape) {
  json answer;
  ASSERT_TRUE(harness::wait_until([&] {
    answer = ctltest::control(daemon.control_socket(), {{"cmd", "clients"}});
    return answer.contains("clients") && answer["clients"].is_array() && answer["clients"].size() == 2;
  })) << answer.dump();
  std::multiset<std::string> states;
  std::set<long long> ids;
  for (const json& row : answer["clients"]) {
    ASSERT_TRUE(has_shape(row, {{"id", Kind::integer},
                                {"state", Kind::string},
                                {"pool", Kind::null_or_string},
                                {"worker", Kind::integer},
                                {"age_s", Kind::number},
                                {"state_age_s", Kind::number}}));
    states.insert(row["state"].get<std::string>());
    ids.insert(row["id"].get<long long>());
    EXPECT_TRUE(row["pool"].is_string()) << "a logged-in client belongs to a pool: " << row.dump();
    EXPECT_GE(row["age_s"].get<double>(), 0.0);
    EXPECT_LE(row["state_age_s"].get<double>(), row["age_s"].get<double>() + 0.001) << row.dump();
  }
  EXPECT_EQ(ids.size(), 2U) << "client ids are distinct: " << answer.dump();
  EXPECT_EQ(states, (std::multiset<std::string>{"active", "idle"})) << answer.dump();
}

TEST_F(ControlCommandsTest, ServersShapeAndBackendPids) {
  json answer;
  ASSERT_TRUE(harness::wait_until([&] {
    answer = ctltest::control(daemon.control_socket(), {{"cmd", "servers"}});
    if (!answer.contains("servers") || !answer["servers"].is_array()) return false;
    return std::any_of(answer["servers"].begin(), answer["servers"].end(),
                       [](const json& row) { return row.value("state", "") == "active"; });
  })) << answer.dump();

  std::vector<int> pids;
  int active_rows = 0;
  for (const json& row : answer["servers"]) {
    ASSERT_TRUE(has_shape(row, {{"id", Kind::integer},
                                {"state", Kind::string},
                                {"pool", Kind::string},
                                {"worker", Kind::integer},
                                {"backend_pid", Kind::integer},
                                {"age_s", Kind::number},
                                {"state_age_s", Kind::number}}));
    if (row["state"] == "active") {
      ++active_rows;
      EXPECT_EQ(row["backend_pid"].get<int>(), in_tx_backend_pid)
          << "the active server is the backend in_tx's transaction runs on: " << row.dump();
    }
    if (row["state"] == "active" || row["state"] == "idle") pids.push_back(row["backend_pid"].get<int>());
  }
  EXPECT_EQ(active_rows, 1) << answer.dump();
  EXPECT_GE(pids.size(), 2U) << answer.dump();

  // Every reported backend pid is a live client backend.
  const PgConn observer = harness::connect(harness::postgres().conninfo());
  for (const int pid : pids) {
    EXPECT_EQ(harness::scalar(observer,
                              "SELECT backend_type FROM pg_stat_activity WHERE pid = " + std::to_string(pid)),
              "client backend")
        << "backend_pid " << pid;
  }
}

TEST_F(ControlCommandsTest, TeardownShapeCountsOutcomes) {
  // in_tx disconnects inside its transaction: a rollback release.
  in_tx.reset();
  json answer;
  ASSERT_TRUE(harness::wait_until([&] {
    answer = ctltest::control(daemon.control_socket(), {{"cmd", "teardown"}});
    return answer.contains("outcomes") && answer["outcomes"].contains("rollback") &&
           answer["outcomes"]["rollback"].value("count", 0) >= 1;
  })) << "a client that left mid-transaction is a rollback release: "
      << answer.dump();

  ASSERT_TRUE(has_shape(
      answer, {{"sla_ms", Kind::number}, {"outcomes", Kind::object}, {"recent_violations", Kind::array}}));
  for (const char* outcome : {"clean", "rollback", "cancel", "discard"}) {
    SCOPED_TRACE(outcome);
    ASSERT_TRUE(answer["outcomes"].contains(outcome)) << answer.dump();
    const json& stats = answer["outcomes"][outcome];
    ASSERT_TRUE(has_shape(stats, {{"count", Kind::integer},
                                  {"p50_ms", Kind::number},
                                  {"p90_ms", Kind::number},
                                  {"p99_ms", Kind::number},
                                  {"max_ms", Kind::number},
                                  {"sla_violations", Kind::integer}}));
    EXPECT_LE(stats["p50_ms"].get<double>(), stats["p90_ms"].get<double>()) << stats.dump();
    EXPECT_LE(stats["p90_ms"].get<double>(), stats["p99_ms"].get<double>()) << stats.dump();
    EXPECT_LE(stats["p99_ms"].get<double>(), stats["max_ms"].get<double>() + 1e-9) << stats.dump();
    EXPECT_LE(stats["sla_violations"].get<long long>(), stats["count"].get<long long>());
  }
  EXPECT_GE(answer["outcomes"]["clean"]["count"].get<long long>(), 1) << "idle's query: a clean release";
  EXPECT_GT(answer["outcomes"]["rollback"]["max_ms"].get<double>(), 0.0) << "a rollback takes a round trip";
  const json overall = status();
  EXPECT_EQ(answer["sla_ms"], overall["teardown"]["sla_ms"]);
  long long releases = 0;
  for (const auto& [name, stats] : answer["outcomes"].items()) releases += stats["count"].get<long long>();
  EXPECT_EQ(releases, overall["teardown"]["releases"].get<long long>()) << overall.dump();
}

TEST_F(ControlCommandsTest, StateCommandsAcknowledge) {
  const std::string socket = daemon.control_socket();
  auto expect_ack = [&](const json& request, const std::string& state) {
    const json answer = ctltest::control(socket, request);
    EXPECT_TRUE(has_shape(answer, {{"ok", Kind::boolean}, {"state", Kind::string}})) << request.dump();
    EXPECT_EQ(answer.value("ok", false), true) << request.dump() << " -> " << answer.dump();
    EXPECT_EQ(answer.value("state", ""), state) << request.dump() << " -> " << answer.dump();
    return answer;
  };
  harness::exec_ok(in_tx, "COMMIT");

  expect_ack({{"cmd", "pause"}}, "paused");
  EXPECT_EQ(status()["state"], "paused");
  expect_ack({{"cmd", "resume"}}, "running");
  EXPECT_EQ(status()["state"], "running");

  const json reload = expect_ack({{"cmd", "reload"}}, "running");
  EXPECT_TRUE(reload.contains("note") && reload["note"].is_string()) << reload.dump();
  json last;
  EXPECT_TRUE(harness::wait_until([&] {
    last = status()["reload"]["last"];
    return !last.is_null();
  })) << "the reload outcome never appeared in status.reload.last";
  ASSERT_TRUE(has_shape(
      last, {{"ok", Kind::boolean}, {"error", Kind::null_or_string}, {"seconds_ago", Kind::number}}));
  EXPECT_TRUE(last["ok"].get<bool>()) << "the unchanged config reloads: " << last.dump();

  // Drain with an idle client: closed at once (57P01); the daemon ends up drained, not exited.
  const ctltest::NoticeLog idle_notices(idle);
  const json drain = ctltest::control(socket, {{"cmd", "drain"}, {"timeout_s", 5}});
  EXPECT_EQ(drain.value("ok", false), true) << drain.dump();
  EXPECT_TRUE(drain.value("state", "") == "draining" || drain.value("state", "") == "drained")
      << drain.dump();
  EXPECT_TRUE(ctltest::wait_for_state(socket, "drained")) << status().dump();
  const json drained = status();
  EXPECT_TRUE(drained["drain"]["started"].get<bool>()) << drained.dump();
  EXPECT_EQ(drained["drain"]["forced"], 0) << drained.dump();
  EXPECT_EQ(drained["clients"]["total"], 0) << drained.dump();
  EXPECT_TRUE(ctltest::await_closed_while_idle(idle)) << "the idle client was not closed";
  EXPECT_TRUE(idle_notices.saw_sqlstate("57P01")) << "told why: " << idle_notices.describe();
  // Pause is refused while drained; resume brings the daemon back.
  EXPECT_TRUE(is_error(ctltest::control(socket, {{"cmd", "pause"}})));
  expect_ack({{"cmd", "resume"}}, "running");
  const PgConn again = harness::connect(daemon.conninfo());
  EXPECT_EQ(harness::scalar(again, "SELECT 7"), "7");

  // shutdown answers, then the daemon exits (0) on its own.
  expect_ack({{"cmd", "shutdown"}}, "stopping");
  const auto exit_status = daemon.wait_exit(10s);
  ASSERT_TRUE(exit_status.has_value()) << "sluiced still running 10 s after shutdown";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << "wait status " << *exit_status;
}

// A daemon with pool_size 1: the second client waits, and the counts say so.
TEST(ControlWaitingTest, WaitingClientIsCounted) {
  harness::Sluiced daemon({.pool_size = 1});
  const PgConn holder = harness::connect(daemon.conninfo());
  const PgConn waiter = harness::connect(daemon.conninfo());
  harness::exec_ok(holder, "BEGIN");
  const auto waits_so_far = [&] {
    return ctltest::control(daemon.control_socket(), {{"cmd", "pools"}})["pools"][0]["waits"];
  };
  const json waits_before = waits_so_far();
  ASSERT_EQ(PQsendQuery(waiter.get(), "SELECT 5"), 1);
  json answer;
  EXPECT_TRUE(harness::wait_until([&] {
    answer = ctltest::status(daemon.control_socket());
    return answer["clients"]["waiting"] == 1;
  })) << answer.dump();
  EXPECT_EQ(answer["clients"]["active"], 1) << answer.dump();
  json pools;
  EXPECT_TRUE(harness::wait_until([&] {
    pools = ctltest::control(daemon.control_socket(), {{"cmd", "pools"}});
    return pools["pools"].size() == 1 && pools["pools"][0]["clients"]["waiting"] == 1 &&
           pools["pools"][0]["longest_wait_ms"].get<double>() >= 20.0;
  })) << "longest_wait_ms grows while a client waits: "
      << pools.dump();
  const json clients = ctltest::control(daemon.control_socket(), {{"cmd", "clients"}});
  EXPECT_EQ(std::count_if(clients["clients"].begin(), clients["clients"].end(),
                          [](const json& row) { return row["state"] == "waiting"; }),
            1)
      << clients.dump();
  harness::exec_ok(holder, "COMMIT");
  const auto result = ctltest::await_result(waiter);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(PQgetvalue(result->get(), 0, 0), std::string("5"));
  // Counted, with at least the time it was seen waiting.
  const json waits_after = waits_so_far();
  EXPECT_EQ(waits_after["count"].get<int>(), waits_before["count"].get<int>() + 1) << waits_after.dump();
  EXPECT_GE(waits_after["total_ms"].get<double>() - waits_before["total_ms"].get<double>(), 20.0)
      << waits_before.dump() << " then " << waits_after.dump();
}

// A control peer accepted before the daemon stops gets its answer before the daemon exits (a
// `status` polled through a stop or a live upgrade); the daemon still exits 0, without waiting
// for the peer that was answered and stays open.
TEST(ControlStopTest, APeerAcceptedBeforeTheStopIsAnsweredBeforeTheExit) {
  harness::Sluiced daemon;
  ctltest::ControlConnection early(daemon.control_socket());
  ctltest::ControlConnection answered(daemon.control_socket());
  // Accepted in order: `answered` got its answer, so `early` was accepted before it.
  ASSERT_EQ(answered.request({{"cmd", "status"}}).value("state", ""), "running");
  daemon.send_signal(SIGTERM);
  ASSERT_TRUE(harness::wait_until([&] {
    return daemon.log().find("drained: every client has left") != std::string::npos;
  })) << daemon.log();
  // Answered; and no `resume` brings back a daemon that is winding down to exit.
  const json late = early.request({{"cmd", "resume"}});
  EXPECT_EQ(late.value("error", ""), "cannot resume: the daemon is exiting") << late.dump();
  EXPECT_TRUE(answered.wait_closed());
  const auto exit_status = daemon.wait_exit(5s);
  ASSERT_TRUE(exit_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << "wait status " << *exit_status;
}

// ---- bad input -------------------------------------------------------------

class ControlBadInputTest : public ::testing::Test {
 protected:
  // The daemon still answers status on a fresh connection, and SQL still works.
  void expect_daemon_healthy() {
    const json answer = ctltest::status(daemon.control_socket());
    EXPECT_EQ(answer.value("state", ""), "running") << answer.dump();
    const PgConn client = harness::connect(daemon.conninfo());
    EXPECT_EQ(harness::scalar(client, "SELECT 'still ok'"), "still ok");
    EXPECT_TRUE(daemon.alive());
  }

  harness::Sluiced daemon;
};

TEST_F(ControlBadInputTest, EachBadLineGetsAnErrorAndTheConnectionStaysOpen) {
  std::string garbage;
  std::mt19937 random(12345);
  for (int i = 0; i < 4096; ++i) {
    const char byte = static_cast<char>(random() & 0xFF);
    if (byte != '\n') garbage.push_back(byte);
  }
  garbage[0] = '\0';  // starts with a NUL, has invalid UTF-8 throughout
  struct Case {
    std::string name;
    std::string line;
    std::string mentions;  // a word the error must contain ("" for none)
  };
  const std::vector<Case> cases = {
      {"malformed JSON", R"({"cmd": "status")", ""},
      {"not JSON at all", "status please", ""},
      {"unknown command", R"({"cmd": "frobnicate"})", "frobnicate"},
      {"wrong argument type", R"({"cmd": "drain", "timeout_s": "x"})", "timeout_s"},
      {"negative timeout", R"({"cmd": "drain", "timeout_s": -1})", "timeout_s"},
      {"unknown argument", R"({"cmd": "status", "verbose": true})", "verbose"},
      {"cmd not a string", R"({"cmd": 5})", "cmd"},
      {"missing cmd", R"({"command": "status"})", "cmd"},
      {"not an object", R"(["status"])", ""},
      {"binary garbage", garbage, ""},
      {"deep nesting", std::string(10000, '['), ""},
      {"deep object nesting",
       [] {
         std::string s;
         for (int i = 0; i < 10000; ++i) s += "{\"a\":";
         return s;
       }(),
       ""},
  };
  ctltest::ControlConnection connection(daemon.control_socket());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(connection.send_raw(c.line + "\n")) << "the daemon closed the connection";
    const json answer = parse_line(connection.read_line());
    EXPECT_TRUE(is_error(answer));
    if (!c.mentions.empty() && answer.contains("error")) {
      EXPECT_NE(answer["error"].get<std::string>().find(c.mentions), std::string::npos) << answer.dump();
    }
    // Same connection, next request: still answered.
    const json follow_up = connection.request({{"cmd", "status"}});
    EXPECT_EQ(follow_up.value("state", ""), "running") << follow_up.dump();
  }
  // None of it did anything: in particular the drain with a bad timeout did not start a drain.
  const json answer = ctltest::status(daemon.control_socket());
  EXPECT_FALSE(answer["drain"]["started"].get<bool>()) << answer.dump();
  expect_daemon_healthy();
}

TEST_F(ControlBadInputTest, PipelinedRequestsAreAnsweredInOrder) {
  ctltest::ControlConnection connection(daemon.control_socket());
  ASSERT_TRUE(connection.send_raw("{\"cmd\":\"pools\"}\n{\"cmd\":\"nope\"}\r\n{\"cmd\":\"status\"}\n"));
  const json first = parse_line(connection.read_line());
  const json second = parse_line(connection.read_line());
  const json third = parse_line(connection.read_line());
  EXPECT_TRUE(first.contains("pools")) << first.dump();
  EXPECT_TRUE(is_error(second));
  EXPECT_EQ(third.value("state", ""), "running") << third.dump();
}

TEST_F(ControlBadInputTest, OverLongLineGetsAnErrorAndIsClosed) {
  {
    ctltest::ControlConnection connection(daemon.control_socket());
    // 1 MiB without a newline, then the newline: far over limits.control_request_max (64 KiB).
    std::string line = R"({"cmd": "status", "pad": ")" + std::string(std::size_t{1} << 20, 'x') + "\"}\n";
    connection.send_raw(line);  // may fail halfway: the daemon is allowed to close early
    const json answer = parse_line(connection.read_line());
    EXPECT_TRUE(is_error(answer));
    if (answer.contains("error")) {
      EXPECT_NE(answer["error"].get<std::string>().find("too long"), std::string::npos) << answer.dump();
    }
    EXPECT_TRUE(connection.wait_closed()) << "an over-long request closes the connection";
  }
  expect_daemon_healthy();
}

TEST_F(ControlBadInputTest, LastLineWithoutNewlineIsAnsweredBeforeClose) {
  ctltest::ControlConnection connection(daemon.control_socket());
  ASSERT_TRUE(connection.send_raw(R"({"cmd": "status"})"));
  connection.shutdown_write();  // EOF after a line without its newline: still a request
  const json answer = parse_line(connection.read_line());
  EXPECT_EQ(answer.value("state", ""), "running") << answer.dump();
  EXPECT_TRUE(connection.wait_closed());
}

// ---- peers that are not allowed ---------------------------------------------

struct PeerOutcome {
  int connect_errno = 0;  // 0: connected
  std::string received;   // everything the daemon sent before closing
  bool closed = false;    // the daemon closed the connection (EOF/reset) within 5 s
};

// Forks a child that drops to `nobody`, connects to `socket_path`, sends a status request and
// reads until the daemon closes. Only async-signal-safe calls after the fork.
PeerOutcome connect_as_nobody(const std::string& socket_path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const uid_t uid = ctltest::nobody_uid();
  const gid_t gid = ctltest::nobody_gid();
  const char request[] = "{\"cmd\": \"status\"}\n";
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    ::close(pipe_fds[0]);
    const int out = pipe_fds[1];
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) _exit(126);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) _exit(125);
    int error = 0;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) error = errno;
    // Record: "E<errno as 4 bytes>", then the bytes received; exit 0 once closed, 3 if not.
    char header[5] = {'E'};
    std::memcpy(header + 1, &error, sizeof error);
    if (::write(out, header, sizeof header) != sizeof header) _exit(124);
    if (error != 0) _exit(0);
    (void)::send(fd, request, sizeof request - 1, MSG_NOSIGNAL);
    char buffer[4096];
    for (;;) {
      pollfd wake{.fd = fd, .events = POLLIN, .revents = 0};
      if (::poll(&wake, 1, 5000) <= 0) _exit(3);  // not closed within 5 s
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) _exit(0);  // EOF or reset: closed
      (void)::write(out, buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(pipe_fds[1]);
  std::string record;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    record.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3) || record.size() < 5) {
    throw std::runtime_error("the nobody child failed (wait status " + std::to_string(status) + ")");
  }
  PeerOutcome outcome;
  std::memcpy(&outcome.connect_errno, record.data() + 1, sizeof outcome.connect_errno);
  outcome.received = record.substr(5);
  outcome.closed = outcome.connect_errno == 0 && WEXITSTATUS(status) == 0;
  return outcome;
}

TEST(ControlPeerTest, NonRootPeerIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to nobody";
  harness::Sluiced daemon;
  const std::string socket = daemon.control_socket();

  struct stat info {};
  ASSERT_EQ(::stat(socket.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0600U) << "control socket mode " << std::oct << (info.st_mode & 07777);
  EXPECT_EQ(info.st_uid, ::geteuid());

  // As created (socket 0600 owned by root, in a 0700 directory) the kernel refuses nobody.
  const PeerOutcome kernel = connect_as_nobody(socket);
  EXPECT_EQ(kernel.connect_errno, EACCES) << std::strerror(kernel.connect_errno);

  // Opened up on the file system, the daemon's own SO_PEERCRED check must refuse.
  ASSERT_EQ(::chmod(daemon.socket_dir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(socket.c_str(), 0666), 0);
  const PeerOutcome refused = connect_as_nobody(socket);
  ASSERT_EQ(refused.connect_errno, 0) << std::strerror(refused.connect_errno);
  const auto newline = refused.received.find('\n');
  ASSERT_NE(newline, std::string::npos) << "no answer line, got: " << refused.received;
  const json answer = json::parse(refused.received.substr(0, newline), nullptr, false);
  EXPECT_TRUE(is_error(answer)) << refused.received;
  if (answer.contains("error")) {
    EXPECT_NE(answer["error"].get<std::string>().find("permission"), std::string::npos) << answer.dump();
  }
  EXPECT_EQ(refused.received.substr(newline + 1), "") << "only the refusal, no status answer";
  EXPECT_TRUE(refused.closed) << "the refused peer is closed";
  EXPECT_NE(daemon.log().find("refused"), std::string::npos) << "the refusal is logged";

  // Root still gets its answers.
  EXPECT_EQ(ctltest::status(socket).value("state", ""), "running");
}

}  // namespace
