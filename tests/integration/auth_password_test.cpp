// Password authentication end to end: roles with passwords made by the harness's PostgreSQL
// (password_encryption scram-sha-256 and md5), their secrets copied from pg_authid into auth.file,
// and libpq logging in through sluiced over the Unix socket and TCP.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <string>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace {

using authtest::contains;
using authtest::refusal;
using authtest::write_file;
using harness::free_tcp_port;
using harness::PgConn;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kScramPassword = "scram secret";
constexpr const char* kMd5Password = "md5 secret";

// The roles, made once per test binary (each shard has its own PostgreSQL).
struct Roles {
  std::string scram_secret;  // pg_authid.rolpassword of auth_scram
  std::string md5_secret;    // of auth_md5
};

const Roles& roles() {
  static const Roles made = [] {
    authtest::set_role("auth_scram", kScramPassword, "scram-sha-256");
    authtest::set_role("auth_other", "other", "scram-sha-256");
    authtest::set_role("auth_md5", kMd5Password, "md5");
    const PgConn admin = harness::connect(harness::postgres().conninfo());
    return Roles{harness::scalar(admin, "SELECT rolpassword FROM pg_authid WHERE rolname = 'auth_scram'"),
                 harness::scalar(admin, "SELECT rolpassword FROM pg_authid WHERE rolname = 'auth_md5'")};
  }();
  return made;
}

std::string users_file() {
  return "; copied from pg_authid\n\"auth_scram\" \"" + roles().scram_secret + "\"\n\"auth_md5\" \"" +
         roles().md5_secret + "\"\n";
}

// {"auth": {"type": <type>, "file": "users.txt"}}
json password_auth(const std::string& type) { return {{"auth", {{"type", type}, {"file", "users.txt"}}}}; }

json tcp_on(int port) { return {{"listen", {{"tcp", "127.0.0.1:" + std::to_string(port)}}}}; }

// sluiced with these overrides, users.txt beside its config.
harness::SluicedConfig auth_config(const json& overrides) {
  auto config = harness::default_config({.overrides = overrides});
  write_file(config.dir.path() + "/users.txt", users_file());
  return config;
}

std::string tcp_conninfo(int port, const std::string& user, const std::string& password) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=postgres connect_timeout=10 user=" + user +
         " password='" + password + "'";
}

std::string with_password(const std::string& conninfo, const std::string& password) {
  return conninfo + " password='" + password + "'";
}

// The `auth` column of sluicectl clients for the one client logged in.
std::string auth_of_clients(const harness::Sluiced& daemon) {
  const json clients = ctltest::control(daemon.control_socket(), {{"cmd", "clients"}})["clients"];
  std::string methods;
  for (const json& client : clients) {
    methods += (methods.empty() ? "" : ",") +
               (client["auth"].is_null() ? "null" : client["auth"].get<std::string>());
  }
  return methods;
}

TEST(AuthPassword, ScramFromAuthFileLogsInAndShowsInClients) {
  harness::Sluiced daemon(auth_config(password_auth("scram-sha-256")));
  const PgConn conn =
      harness::connect(with_password(daemon.conninfo("postgres", "auth_scram"), kScramPassword));
  EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "auth_scram");
  EXPECT_EQ(auth_of_clients(daemon), "scram-sha-256");
  // The table sluicectl prints has the column too.
  const auto table = harness::run_capture({SLUICECTL_PATH, "-s", daemon.control_socket(), "clients"}, 10s);
  ASSERT_TRUE(table.succeeded()) << table.describe() << table.err;
  EXPECT_TRUE(contains(table.out, "AUTH")) << table.out;
  EXPECT_TRUE(contains(table.out, "scram-sha-256")) << table.out;
}

TEST(AuthPassword, WrongPasswordAndUnknownRoleGetTheSameAnswer) {
  harness::Sluiced daemon(auth_config(password_auth("scram-sha-256")));
  const std::string wrong = refusal(with_password(daemon.conninfo("postgres", "auth_scram"), "wrong"));
  EXPECT_TRUE(contains(wrong, "FATAL:  password authentication failed for user \"auth_scram\"")) << wrong;
  // A role PostgreSQL has but auth.file does not, and one nobody has: the same words.
  const std::string missing = refusal(with_password(daemon.conninfo("postgres", "auth_other"), "other"));
  EXPECT_TRUE(contains(missing, "FATAL:  password authentication failed for user \"auth_other\"")) << missing;
  const std::string nobody = refusal(with_password(daemon.conninfo("postgres", "nobody"), "x"));
  EXPECT_TRUE(contains(nobody, "FATAL:  password authentication failed for user \"nobody\"")) << nobody;
  // The log says what really happened.
  EXPECT_TRUE(harness::wait_until(
      [&] { return contains(daemon.log(), "password does not match for user \"auth_scram\""); }));
  EXPECT_TRUE(contains(daemon.log(), "Role \"nobody\" does not exist in auth.file."));
}

// The exact bytes: SQLSTATE 28P01, and an unknown role's exchange is shaped like a real one's.
TEST(AuthPassword, UnknownRoleRunsAMockExchangeWithAStableSalt) {
  harness::Sluiced daemon(auth_config(password_auth("scram-sha-256")));
  const auto server_first = [&](const std::string& user) {
    harness::RawClient client(daemon.socket_path());
    client.send(harness::startup_packet({{"user", user}, {"database", "postgres"}}));
    const auto sasl = client.read_message();
    EXPECT_TRUE(sasl && sasl->type == 'R');
    EXPECT_EQ(sasl->payload, harness::be32(10) + std::string("SCRAM-SHA-256\0\0", 15));
    const std::string first = "n,,n=,r=clientnonce";
    client.send("p" + harness::be32(static_cast<std::uint32_t>(4 + 14 + 4 + first.size())) +
                std::string("SCRAM-SHA-256\0", 14) + harness::be32(static_cast<std::uint32_t>(first.size())) +
                first);
    const auto reply = client.read_message();
    EXPECT_TRUE(reply && reply->type == 'R');
    // r=<nonce>,s=<salt>,i=<iterations>: the nonce differs every time, the rest must not.
    const std::string body = reply ? reply->payload.substr(4) : "";
    client.send("p" + harness::be32(4 + 9) + "c=biws,r=");  // garbage final: the exchange ends
    return body.substr(body.find(",s="));
  };
  const std::string nobody = server_first("nobody");
  EXPECT_EQ(nobody, server_first("nobody"));
  EXPECT_NE(nobody, server_first("someone_else"));
  EXPECT_TRUE(contains(nobody, ",i=4096")) << nobody;
  EXPECT_TRUE(contains(server_first("auth_scram"), ",i=4096"));

  // A real role with a wrong proof, as bytes: FATAL 28P01.
  harness::RawClient client(daemon.socket_path());
  client.send(harness::startup_packet({{"user", "nobody"}, {"database", "postgres"}}));
  ASSERT_TRUE(client.read_message());
  const std::string first = "n,,n=,r=abc";
  client.send("p" + harness::be32(static_cast<std::uint32_t>(4 + 14 + 4 + first.size())) +
              std::string("SCRAM-SHA-256\0", 14) + harness::be32(static_cast<std::uint32_t>(first.size())) +
              first);
  const auto continued = client.read_message();
  ASSERT_TRUE(continued);
  const std::string server_first_message = continued->payload.substr(4);
  const std::string nonce = server_first_message.substr(2, server_first_message.find(',') - 2);
  const std::string final = "c=biws,r=" + nonce + ",p=" + std::string(43, 'A') + "=";
  client.send("p" + harness::be32(static_cast<std::uint32_t>(4 + final.size())) + final);
  const auto error = client.read_message();
  ASSERT_TRUE(error && error->type == 'E');
  const auto fields = harness::error_fields(*error);
  EXPECT_EQ(fields.at('C'), "28P01");
  EXPECT_EQ(fields.at('M'), "password authentication failed for user \"nobody\"");
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(AuthPassword, Md5RolesLogInAndScramSecretsUseScramUnderMd5) {
  harness::Sluiced daemon(auth_config(password_auth("md5")));
  const PgConn md5 = harness::connect(with_password(daemon.conninfo("postgres", "auth_md5"), kMd5Password));
  EXPECT_EQ(harness::scalar(md5, "SELECT current_user"), "auth_md5");
  EXPECT_EQ(auth_of_clients(daemon), "md5");
  // As PostgreSQL: md5 with a role whose secret is a SCRAM verifier runs SCRAM.
  const PgConn scram =
      harness::connect(with_password(daemon.conninfo("postgres", "auth_scram"), kScramPassword));
  EXPECT_EQ(harness::scalar(scram, "SELECT current_user"), "auth_scram");
  const std::string wrong = refusal(with_password(daemon.conninfo("postgres", "auth_md5"), "wrong"));
  EXPECT_TRUE(contains(wrong, "password authentication failed for user \"auth_md5\"")) << wrong;
  const std::string nobody = refusal(with_password(daemon.conninfo("postgres", "nobody"), "x"));
  EXPECT_TRUE(contains(nobody, "password authentication failed for user \"nobody\"")) << nobody;
}

// The first challenge must not tell which roles exist: under md5, PostgreSQL answers a role it does
// not know with its password_encryption's exchange (scram-sha-256 by default), as it answers every
// role whose secret is a SCRAM verifier.
TEST(AuthPassword, UnderMd5AnUnknownRoleGetsTheSameChallengeAsAScramRole) {
  harness::Sluiced daemon(auth_config(password_auth("md5")));
  const auto challenge = [&](const std::string& user) {
    harness::RawClient client(daemon.socket_path());
    client.send(harness::startup_packet({{"user", user}, {"database", "postgres"}}));
    const auto request = client.read_message();
    return request && request->type == 'R' ? request->payload.substr(0, 4) : std::string("none");
  };
  EXPECT_EQ(challenge("auth_scram"), harness::be32(10));  // AuthenticationSASL
  EXPECT_EQ(challenge("auth_md5"), harness::be32(5));     // AuthenticationMD5Password
  EXPECT_EQ(challenge("nobody"), harness::be32(10));
}

TEST(AuthPassword, ScramOverTcp) {
  const int port = free_tcp_port();
  harness::Sluiced daemon(auth_config([&] {
    json overrides = password_auth("scram-sha-256");
    overrides.merge_patch(tcp_on(port));
    return overrides;
  }()));
  authtest::wait_for_tcp(port);
  const PgConn conn = harness::connect(tcp_conninfo(port, "auth_scram", kScramPassword));
  EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "auth_scram");
  const std::string wrong = refusal(tcp_conninfo(port, "auth_scram", "wrong"));
  EXPECT_TRUE(contains(wrong, "password authentication failed for user \"auth_scram\"")) << wrong;
}

TEST(AuthPassword, TcpWithoutTlsNeedsAPasswordOrTrustWrittenOut) {
  const int port = free_tcp_port();
  {
    // No auth section: trust stays on the Unix socket, TCP is refused.
    harness::Sluiced daemon(harness::default_config({.overrides = tcp_on(port)}));
    authtest::wait_for_tcp(port);
    const std::string refused = refusal(tcp_conninfo(port, harness::os_user(), ""));
    EXPECT_TRUE(contains(refused, "no pg_hba.conf entry for host \"127.0.0.1\", user \"" +
                                      harness::os_user() + "\", database \"postgres\", no encryption"))
        << refused;
    EXPECT_EQ(refusal(daemon.conninfo()), "");
    EXPECT_TRUE(contains(daemon.log(),
                         "TCP clients without TLS on 127.0.0.1:" + std::to_string(port) + " are refused"));
  }
  {
    json overrides = tcp_on(port);
    overrides["auth"] = {{"type", "trust"}};
    harness::Sluiced daemon(harness::default_config({.overrides = overrides}));
    authtest::wait_for_tcp(port);
    EXPECT_EQ(refusal(tcp_conninfo(port, harness::os_user(), "")), "");
    EXPECT_TRUE(contains(daemon.log(), "anyone who can reach 127.0.0.1:" + std::to_string(port)));
  }
}

TEST(AuthPassword, ClientThatStopsMidScramIsClosedAtTheLoginTimeout) {
  json overrides = password_auth("scram-sha-256");
  overrides["limits"] = {{"login_timeout_ms", 300}};
  harness::Sluiced daemon(auth_config(overrides));
  harness::RawClient client(daemon.socket_path());
  client.send(harness::startup_packet({{"user", "auth_scram"}, {"database", "postgres"}}));
  const auto sasl = client.read_message();
  ASSERT_TRUE(sasl && sasl->type == 'R');
  // ... and then nothing: the janitor ends it.
  const auto error = client.read_message(5000ms);
  ASSERT_TRUE(error && error->type == 'E');
  EXPECT_TRUE(contains(harness::error_fields(*error).at('M'), "login timeout"));
  EXPECT_TRUE(client.closed_by_peer());
  // Other clients logged in meanwhile are unaffected.
  const PgConn conn =
      harness::connect(with_password(daemon.conninfo("postgres", "auth_scram"), kScramPassword));
  EXPECT_EQ(harness::scalar(conn, "SELECT 1"), "1");
}

TEST(AuthPassword, WorksWithSeveralWorkers) {
  json overrides = password_auth("scram-sha-256");
  overrides["workers"] = 2;
  harness::Sluiced daemon(auth_config(overrides));
  std::vector<PgConn> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(
        harness::connect(with_password(daemon.conninfo("postgres", "auth_scram"), kScramPassword)));
    EXPECT_EQ(harness::scalar(conns.back(), "SELECT current_user"), "auth_scram");
  }
  EXPECT_TRUE(contains(refusal(with_password(daemon.conninfo("postgres", "auth_scram"), "no")),
                       "password authentication failed"));
}

}  // namespace

namespace {

// Bytes libpq never sends, in the middle of an exchange: PostgreSQL's words, then the close.
TEST(AuthPassword, HostileBytesDuringTheExchangeAreRefused) {
  harness::Sluiced daemon(auth_config(password_auth("scram-sha-256")));
  const auto refused_with = [&](const std::string& bytes) {
    harness::RawClient client(daemon.socket_path());
    client.send(harness::startup_packet({{"user", "auth_scram"}, {"database", "postgres"}}));
    const auto sasl = client.read_message();
    EXPECT_TRUE(sasl && sasl->type == 'R');
    client.try_send(bytes);
    const auto error = client.read_message();
    EXPECT_TRUE(error && error->type == 'E');
    EXPECT_TRUE(client.closed_by_peer());
    return error ? harness::error_fields(*error) : std::map<char, std::string>{};
  };
  // A query before the password: as PostgreSQL, 08P01 and the type it got.
  const auto query = refused_with(harness::query_message("SELECT 1"));
  EXPECT_EQ(query.at('C'), "08P01");
  EXPECT_EQ(query.at('M'), "expected SASL response, got message type 81");
  // A password message longer than any SASL message may be.
  const auto huge = refused_with("p" + harness::be32(1 << 20));
  EXPECT_EQ(huge.at('C'), "08P01");
  // A mechanism nobody offered.
  const std::string first = "n,,n=,r=abc";
  const auto mechanism = refused_with(
      "p" + harness::be32(static_cast<std::uint32_t>(4 + 6 + 4 + first.size())) + std::string("PLAIN\0", 6) +
      harness::be32(static_cast<std::uint32_t>(first.size())) + first);
  EXPECT_EQ(mechanism.at('M'), "client selected an invalid SASL authentication mechanism");
  // The daemon is unharmed.
  const PgConn conn =
      harness::connect(with_password(daemon.conninfo("postgres", "auth_scram"), kScramPassword));
  EXPECT_EQ(harness::scalar(conn, "SELECT 1"), "1");
}

}  // namespace

namespace {

// psql as a user runs it: a passfile on the Unix socket, PGPASSWORD over TCP with md5.
TEST(AuthPassword, PsqlWithAPassfileAndWithPgpassword) {
  const int port = free_tcp_port();
  json overrides = password_auth("md5");
  overrides.merge_patch(tcp_on(port));
  harness::Sluiced daemon(auth_config(overrides));
  authtest::wait_for_tcp(port);
  const std::string passfile = daemon.socket_dir() + "/pgpass";
  write_file(passfile, "*:*:*:auth_scram:" + std::string(kScramPassword) + "\n");
  ASSERT_EQ(::chmod(passfile.c_str(), 0600), 0);  // libpq ignores a passfile others can read
  const auto by_passfile =
      harness::run_capture({"psql", "-X", "-h", daemon.socket_dir(), "-p", std::to_string(daemon.port()),
                            "-U", "auth_scram", "-d", "postgres", "-w", "-Atc", "SELECT current_user"},
                           30s, {"PGPASSFILE=" + passfile});
  EXPECT_TRUE(by_passfile.succeeded()) << by_passfile.describe() << by_passfile.err;
  EXPECT_EQ(by_passfile.out, "auth_scram\n");
  const auto by_env =
      harness::run_capture({"psql", "-X", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "auth_md5",
                            "-d", "postgres", "-w", "-Atc", "SELECT current_user"},
                           30s, {std::string("PGPASSWORD=") + kMd5Password});
  EXPECT_TRUE(by_env.succeeded()) << by_env.describe() << by_env.err;
  EXPECT_EQ(by_env.out, "auth_md5\n");
  const auto wrong = harness::run_capture({"psql", "-X", "-h", "127.0.0.1", "-p", std::to_string(port), "-U",
                                           "auth_md5", "-d", "postgres", "-w", "-Atc", "SELECT 1"},
                                          30s, {"PGPASSWORD=wrong"});
  EXPECT_FALSE(wrong.succeeded());
  EXPECT_TRUE(contains(wrong.err, "password authentication failed for user \"auth_md5\"")) << wrong.err;
}

}  // namespace
