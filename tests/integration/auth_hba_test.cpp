// auth.hba_file end to end: first match wins, reject and "no entry" in PostgreSQL's words, TCP
// rules by address, reload on SIGHUP (under load, and a broken file kept out), sluiced --check.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

namespace {

using authtest::contains;
using authtest::refusal;
using authtest::write_file;
using harness::free_tcp_port;
using harness::PgConn;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kScramPassword = "hba scram secret";
constexpr const char* kMd5Password = "hba md5 secret";

std::string users_file() {
  static const std::string made = [] {
    authtest::set_role("hba_scram", kScramPassword, "scram-sha-256");
    authtest::set_role("hba_rejected", "never asked", "scram-sha-256");
    authtest::set_role("hba_md5", kMd5Password, "md5");
    return authtest::auth_file_line("hba_scram") + authtest::auth_file_line("hba_md5");
  }();
  return made;
}

harness::SluicedConfig hba_config(const std::string& hba, json overrides = json::object()) {
  overrides["auth"] = {{"type", "hba"}, {"hba_file", "hba.conf"}, {"file", "users.txt"}};
  auto config = harness::default_config({.overrides = overrides});
  write_file(config.dir.path() + "/users.txt", users_file());
  write_file(config.dir.path() + "/hba.conf", hba);
  return config;
}

std::string login(const harness::Sluiced& daemon, const std::string& user, const std::string& password,
                  const std::string& database = "postgres") {
  return daemon.conninfo(database, user) + " password='" + password + "'";
}

constexpr const char* kRules = R"(# first match wins
local   all        hba_md5       md5
local   all        hba_rejected  reject
local   postgres   all           scram-sha-256
local   all        all           trust
)";

TEST(AuthHba, FirstMatchWinsWithPostgresWordsForReject) {
  harness::Sluiced daemon(hba_config(kRules));
  EXPECT_EQ(refusal(login(daemon, "hba_md5", kMd5Password)), "");
  EXPECT_EQ(refusal(login(daemon, "hba_scram", kScramPassword)), "");
  const std::string rejected = refusal(login(daemon, "hba_rejected", ""));
  EXPECT_TRUE(contains(rejected,
                       "FATAL:  pg_hba.conf rejects connection for host \"[local]\", user \"hba_rejected\", "
                       "database \"postgres\", no encryption"))
      << rejected;
  // hba_md5 matched line 2 before the scram line: a wrong md5 answer, not a SCRAM one.
  EXPECT_TRUE(contains(refusal(login(daemon, "hba_md5", "wrong")),
                       "password authentication failed for user \"hba_md5\""));
  // Another database falls through to trust; that database is not configured, which is said after login.
  const std::string other = refusal(login(daemon, "hba_scram", "", "elsewhere"));
  EXPECT_TRUE(contains(other, "database \"elsewhere\" does not exist")) << other;
  EXPECT_TRUE(contains(daemon.log(), "auth.hba_file line 3 rejects it"));
}

TEST(AuthHba, TcpRulesMatchTheAddressAndHostsslNeedsTls) {
  const int port = free_tcp_port();
  harness::Sluiced daemon(hba_config(R"(hostssl all all 127.0.0.1/32 trust
host    all hba_md5 10.0.0.0 255.0.0.0 trust
host    all all     127.0.0.0/8  scram-sha-256
)",
                                     {{"listen", {{"tcp", "127.0.0.1:" + std::to_string(port)}}}}));
  authtest::wait_for_tcp(port);
  const auto tcp = [&](const std::string& user, const std::string& password) {
    return "host=127.0.0.1 port=" + std::to_string(port) +
           " dbname=postgres connect_timeout=10 user=" + user + " password='" + password + "'";
  };
  EXPECT_EQ(refusal(tcp("hba_scram", kScramPassword)), "");
  // Not on TLS, so not the hostssl trust line; not from 10/8, so SCRAM, which md5's secret cannot pass.
  const std::string md5 = refusal(tcp("hba_md5", kMd5Password));
  EXPECT_TRUE(contains(md5, "password authentication failed for user \"hba_md5\"")) << md5;
  // Unix socket: no local line at all.
  const std::string local = refusal(login(daemon, "hba_scram", kScramPassword));
  EXPECT_TRUE(
      contains(local,
               "no pg_hba.conf entry for host \"[local]\", user \"hba_scram\", database \"postgres\", "
               "no encryption"))
      << local;
}

TEST(AuthHba, ReloadAppliesANewFileAndKeepsTheOldOneWhenTheNewIsBroken) {
  harness::Sluiced daemon(hba_config(kRules));
  const std::string hba = daemon.socket_dir() + "/hba.conf";
  EXPECT_TRUE(contains(refusal(login(daemon, "hba_rejected", "")), "pg_hba.conf rejects connection"));
  write_file(hba, "local all hba_rejected trust\nlocal all all reject\n");
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  EXPECT_TRUE(harness::wait_until([&] { return refusal(login(daemon, "hba_rejected", "")).empty(); }));
  EXPECT_TRUE(
      contains(refusal(login(daemon, "hba_scram", kScramPassword)), "pg_hba.conf rejects connection"));

  write_file(hba, "local all all trust\nlocal all all ldap\n");
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  json last;
  EXPECT_TRUE(harness::wait_until([&] {
    last = ctltest::status(daemon.control_socket())["reload"]["last"];
    return last.is_object() && !last["ok"].get<bool>();
  }));
  EXPECT_EQ(last["error"], hba + ":2: unsupported authentication method \"ldap\"");
  // The running rules stay.
  EXPECT_TRUE(
      contains(refusal(login(daemon, "hba_scram", kScramPassword)), "pg_hba.conf rejects connection"));
  EXPECT_EQ(refusal(login(daemon, "hba_rejected", "")), "");
}

TEST(AuthHba, ReloadUnderLoadDisturbsNoClient) {
  harness::Sluiced daemon(hba_config(kRules, {{"workers", 2}}));
  const std::string hba = daemon.socket_dir() + "/hba.conf";
  std::atomic<bool> stop{false};
  std::atomic<int> queries{0};
  std::atomic<int> logins{0};
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  const auto fail = [&](const std::string& what) {
    std::lock_guard lock(failures_mutex);
    failures.push_back(what);
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {  // logged in once, querying throughout
      try {
        const PgConn conn = harness::connect(login(daemon, "hba_scram", kScramPassword));
        while (!stop) {
          if (harness::scalar(conn, "SELECT 1") != "1") fail("query");
          ++queries;
        }
      } catch (const std::exception& error) {
        fail(error.what());
      }
    });
    threads.emplace_back([&] {  // logging in again and again, allowed by both files
      while (!stop) {
        if (const std::string refused = refusal(login(daemon, "hba_scram", kScramPassword));
            !refused.empty()) {
          fail(refused);
        }
        ++logins;
      }
    });
  }
  const std::string rules_b = std::string("local all hba_scram scram-sha-256\n") + kRules;
  for (int round = 0; round < 10; ++round) {
    write_file(hba, round % 2 == 0 ? rules_b : kRules);
    ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
    const int seen = logins.load();
    harness::wait_until([&] { return logins.load() >= seen + 3; });
  }
  stop = true;
  for (auto& thread : threads) thread.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, first: " << failures.front();
  EXPECT_GT(queries.load(), 0);
  EXPECT_GE(logins.load(), 30);
}

TEST(AuthHba, CheckReportsTheHbaFileAndLine) {
  harness::TempDir dir;
  write_file(dir.path() + "/hba.conf", "local all all trust\n\nhost all all 10.0.0.0/8 peer\n");
  write_file(dir.path() + "/sluiced.json", R"({"auth": {"type": "hba", "hba_file": "hba.conf"}})");
  const auto checked =
      harness::run_capture({harness::sluiced_path(), "--check", "-c", dir.path() + "/sluiced.json"}, 10s);
  EXPECT_FALSE(checked.succeeded());
  EXPECT_TRUE(contains(checked.err + checked.out,
                       dir.path() + "/hba.conf:3: peer authentication is only supported on local sockets"))
      << checked.err << checked.out;
}

}  // namespace
