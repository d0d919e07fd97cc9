// SCRAM pass-through end to end: the harness's PostgreSQL is made to demand SCRAM of the roles in
// group pt_scram (a pg_hba.conf line ahead of its trust lines), the pool's conninfo holds no
// password, and sluiced logs in to PostgreSQL with the ClientKey each client proved to it (from
// auth.file or auth.query).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace {

using authtest::contains;
using authtest::refusal;
using authtest::write_file;
using harness::PgConn;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kScramGroup = "pt_scram";

// Once per test binary: PostgreSQL asks the members of pt_scram for SCRAM on its Unix socket,
// whatever its trust lines say.
void demand_scram_of_group() {
  static const bool done = [] {
    const PgConn admin = harness::connect(harness::postgres().conninfo());
    harness::exec_ok(admin, std::string("CREATE ROLE ") + kScramGroup + " NOLOGIN");
    authtest::prepend_hba_line(std::string("local all +") + kScramGroup + " scram-sha-256");
    return true;
  }();
  (void)done;
}

// `role` with `password` (SCRAM) in the group PostgreSQL demands SCRAM of; returns once PostgreSQL
// refuses it a login without a password.
void scram_role(const std::string& role, const std::string& password) {
  demand_scram_of_group();
  authtest::set_role(role, password, "scram-sha-256");
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(admin, "GRANT " + std::string(kScramGroup) + " TO " + role);
  const std::string direct = harness::postgres().conninfo("postgres", role);
  ASSERT_TRUE(harness::wait_until([&] { return contains(refusal(direct), "no password supplied"); }))
      << "PostgreSQL does not demand a password of " << role << ": " << refusal(direct);
}

harness::SluicedConfig file_config(const std::string& users, json overrides = json::object(),
                                   int pool_size = 4) {
  overrides["auth"] = {{"type", "scram-sha-256"}, {"file", "users.txt"}};
  auto config = harness::default_config({.pool_size = pool_size, .overrides = overrides});
  write_file(config.dir.path() + "/users.txt", users);
  return config;
}

std::string as(const harness::Sluiced& daemon, const std::string& role, const std::string& password) {
  return daemon.conninfo("postgres", role) + " password='" + password + "'";
}

// `state` narrows the count to backends in that pg_stat_activity state.
int backends_of(const std::string& role, const std::string& state = "") {
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  return std::stoi(harness::scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE usename = '" + role +
                                              "'" + (state.empty() ? "" : " AND state = '" + state + "'")));
}

TEST(AuthPassthrough, AuthFileLoginReachesAServerThatDemandsScram) {
  scram_role("pt_file", "file pw");
  harness::Sluiced daemon(file_config(authtest::auth_file_line("pt_file")));
  const PgConn conn = harness::connect(as(daemon, "pt_file", "file pw"));
  EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "pt_file");
  // The server's backend is the role's, logged in over the socket PostgreSQL asks SCRAM on.
  const std::string backend = harness::scalar(conn, "SELECT pg_backend_pid()");
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  EXPECT_EQ(harness::scalar(
                admin, "SELECT usename || ' ' || client_port FROM pg_stat_activity WHERE pid = " + backend),
            "pt_file -1");
  std::ifstream config(daemon.config_path());
  std::stringstream text;
  text << config.rdbuf();
  EXPECT_FALSE(contains(text.str(), "password")) << "the conninfo holds no password";
}

TEST(AuthPassthrough, AuthQueryLoginPassesThrough) {
  scram_role("pt_query", "query pw");
  // auth.user is the harness's superuser, which PostgreSQL still trusts.
  harness::Sluiced daemon(harness::default_config(
      {.overrides = {{"auth", {{"type", "scram-sha-256"}, {"user", harness::os_user()}}}}}));
  const PgConn conn = harness::connect(as(daemon, "pt_query", "query pw"));
  EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "pt_query");
  const std::string wrong = refusal(as(daemon, "pt_query", "nope"));
  EXPECT_TRUE(contains(wrong, "password authentication failed for user \"pt_query\"")) << wrong;
}

// A pool that never saw a SCRAM login has nothing to log in with: the client is told at once. After a
// SCRAM login of the role, the pool's later servers use its key, also for a client that logged in by
// trust (hba) and for servers opened while nobody waits.
TEST(AuthPassthrough, TheKeyServesLaterServersOfThePool) {
  scram_role("pt_shared", "shared pw");
  const int tcp_port = harness::free_tcp_port();
  json overrides = {{"listen", {{"tcp", "127.0.0.1:" + std::to_string(tcp_port)}}},
                    {"auth", {{"type", "hba"}, {"hba_file", "hba.conf"}, {"file", "users.txt"}}}};
  auto config = harness::default_config({.pool_size = 2, .overrides = overrides});
  write_file(config.dir.path() + "/users.txt", authtest::auth_file_line("pt_shared"));
  write_file(config.dir.path() + "/hba.conf",
             "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n");
  harness::Sluiced daemon(std::move(config));
  authtest::wait_for_tcp(tcp_port);

  const auto started = Clock::now();
  const std::string refused = refusal(daemon.conninfo("postgres", "pt_shared"));
  EXPECT_TRUE(contains(refused, "no password for role \"pt_shared\"")) << refused;
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5)) << "the refusal waited for a timeout";

  const std::string tcp = "host=127.0.0.1 port=" + std::to_string(tcp_port) +
                          " dbname=postgres connect_timeout=10 user=pt_shared password='shared pw'";
  const PgConn scram = harness::connect(tcp);
  harness::exec_ok(scram, "BEGIN");  // holds the pool's one server
  const PgConn trusted = harness::connect(daemon.conninfo("postgres", "pt_shared"));
  EXPECT_EQ(harness::scalar(trusted, "SELECT current_user"), "pt_shared");
  // A refused login's backend may linger a moment in pg_stat_activity.
  EXPECT_TRUE(harness::wait_until([] { return backends_of("pt_shared") == 2; }));
}

TEST(AuthPassthrough, AStaleVerifierGivesTheServersErrorAndIsForgotten) {
  // auth.file keeps the verifier of an older password: sluiced accepts it, PostgreSQL does not.
  scram_role("pt_stale", "old pw");
  const std::string stale_line = authtest::auth_file_line("pt_stale");
  authtest::set_role("pt_stale", "new pw", "scram-sha-256");
  harness::Sluiced daemon(file_config(stale_line));
  const auto started = Clock::now();
  const std::string refused = refusal(as(daemon, "pt_stale", "old pw"));
  EXPECT_TRUE(contains(refused, "FATAL:  password authentication failed for user \"pt_stale\"")) << refused;
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  EXPECT_TRUE(harness::wait_until([&] {
    return contains(daemon.log(),
                    "SCRAM pass-through login of role \"pt_stale\" was refused; its key is forgotten");
  }));
  // auth.file brought up to date, reloaded: the next login brings a key PostgreSQL accepts.
  write_file(daemon.socket_dir() + "/users.txt", authtest::auth_file_line("pt_stale"));
  daemon.send_signal(SIGHUP);
  EXPECT_TRUE(harness::wait_until([&] { return refusal(as(daemon, "pt_stale", "new pw")).empty(); }));
}

// Over a Unix socket TLS is never attempted, whatever sslmode says (as libpq): require is served in
// plain text; channel_binding=require cannot be, and the client is told libpq's reason.
TEST(AuthPassthrough, OverAUnixSocketTlsIsNeverAttempted) {
  scram_role("pt_tls", "tls pw");
  const harness::PostgresServer& pg = harness::postgres();
  const std::string socket = "host='" + pg.socket_dir() + "' port=" + std::to_string(pg.port());
  harness::Sluiced daemon(
      file_config(authtest::auth_file_line("pt_tls"),
                  {{"databases", {{"postgres", {{"conninfo", socket + " sslmode=require"}}}}}}));
  const PgConn conn = harness::connect(as(daemon, "pt_tls", "tls pw"));
  EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "pt_tls");

  harness::Sluiced bound(file_config(
      authtest::auth_file_line("pt_tls"),
      {{"databases", {{"postgres", {{"conninfo", socket + " sslmode=require channel_binding=require"}}}}}}));
  const std::string refused = refusal(as(bound, "pt_tls", "tls pw"));
  EXPECT_TRUE(contains(refused, "channel binding required, but SSL not in use")) << refused;
}

TEST(AuthPassthrough, CancelReachesAPassThroughServer) {
  scram_role("pt_cancel", "cancel pw");
  harness::Sluiced daemon(file_config(authtest::auth_file_line("pt_cancel")));
  const PgConn conn = harness::connect(as(daemon, "pt_cancel", "cancel pw"));
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT pg_sleep(30)"), 1) << PQerrorMessage(conn.get());
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  ASSERT_TRUE(harness::wait_until([&] {
    return harness::scalar(
               admin,
               "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pt_cancel' AND state = 'active'") ==
           "1";
  }));
  const auto started = Clock::now();
  PGcancel* cancel = PQgetCancel(conn.get());
  std::array<char, 256> error{};
  const bool sent = cancel != nullptr && PQcancel(cancel, error.data(), static_cast<int>(error.size())) == 1;
  if (cancel != nullptr) PQfreeCancel(cancel);
  ASSERT_TRUE(sent) << error.data();
  std::string sqlstate;
  while (PGresult* result = PQgetResult(conn.get())) {
    if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) sqlstate = state;
    PQclear(result);
  }
  EXPECT_EQ(sqlstate, "57014");
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5)) << "the cancel did not stop pg_sleep(30)";
  EXPECT_EQ(harness::scalar(conn, "SELECT 1"), "1");
}

TEST(AuthPassthrough, WorkWithTwoWorkers) {
  scram_role("pt_workers", "workers pw");
  harness::Sluiced daemon(file_config(authtest::auth_file_line("pt_workers"), {{"workers", 2}}, 8));
  std::vector<PgConn> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(harness::connect(as(daemon, "pt_workers", "workers pw")));
    harness::exec_ok(clients.back(), "BEGIN");  // each holds a server of its worker's pool
    EXPECT_EQ(harness::scalar(clients.back(), "SELECT current_user"), "pt_workers");
  }
  // Four servers held, one per client. (A pool may have opened one more while its first server read
  // the catalog: that one idles.)
  EXPECT_TRUE(harness::wait_until([] { return backends_of("pt_workers", "idle in transaction") == 4; }));
}

}  // namespace
