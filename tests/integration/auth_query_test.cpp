// auth.query end to end: secrets looked up on the harness's PostgreSQL as auth.user (the harness's
// superuser), for SCRAM and md5 roles, the same answer for unknown roles, and the cache.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace {

using authtest::contains;
using authtest::refusal;
using authtest::set_role;
using harness::PgConn;
using json = nlohmann::json;

// Makes (or re-passwords) `role` with `password`, stored as `encryption` says.
harness::SluicedConfig query_config(const std::string& type, int cache_s) {
  return harness::default_config(
      {.overrides = {{"auth", {{"type", type}, {"user", harness::os_user()}, {"cache_s", cache_s}}}}});
}

std::string as(const harness::Sluiced& daemon, const std::string& role, const std::string& password) {
  return daemon.conninfo("postgres", role) + " password='" + password + "'";
}

TEST(AuthQuery, SecretsComeFromTheServer) {
  set_role("query_scram", "q scram", "scram-sha-256");
  set_role("query_md5", "q md5", "md5");
  harness::Sluiced daemon(query_config("md5", 60));
  const PgConn scram = harness::connect(as(daemon, "query_scram", "q scram"));
  EXPECT_EQ(harness::scalar(scram, "SELECT current_user"), "query_scram");
  const PgConn md5 = harness::connect(as(daemon, "query_md5", "q md5"));
  EXPECT_EQ(harness::scalar(md5, "SELECT current_user"), "query_md5");
  const std::string wrong = refusal(as(daemon, "query_scram", "nope"));
  EXPECT_TRUE(contains(wrong, "FATAL:  password authentication failed for user \"query_scram\"")) << wrong;
  const std::string nobody = refusal(as(daemon, "query_nobody", "nope"));
  EXPECT_TRUE(contains(nobody, "FATAL:  password authentication failed for user \"query_nobody\"")) << nobody;
  EXPECT_TRUE(harness::wait_until(
      [&] { return contains(daemon.log(), "Role \"query_nobody\" was not found by auth.query."); }));
}

// A password past its VALID UNTIL is no password, through sluiced as directly.
TEST(AuthQuery, AnExpiredPasswordIsRefusedAsPostgresRefusesIt) {
  set_role("query_expired", "old secret", "scram-sha-256");
  const PgConn admin = harness::connect(harness::postgres().conninfo());
  harness::exec_ok(admin, "ALTER ROLE query_expired VALID UNTIL '2000-01-01'");
  harness::Sluiced daemon(query_config("scram-sha-256", 0));
  const std::string pooled = refusal(as(daemon, "query_expired", "old secret"));
  EXPECT_TRUE(contains(pooled, "FATAL:  password authentication failed for user \"query_expired\""))
      << pooled;
  harness::exec_ok(admin, "ALTER ROLE query_expired VALID UNTIL 'infinity'");
  EXPECT_EQ(refusal(as(daemon, "query_expired", "old secret")), "");
}

// Before a client has logged in, an unconfigured database looks like an unknown role: the same
// 28P01 after the same (mock) exchange, so the refusal does not tell which databases exist.
TEST(AuthQuery, AnUnconfiguredDatabaseGetsTheAnswerOfAnUnknownRole) {
  set_role("query_scram", "q scram", "scram-sha-256");
  harness::Sluiced daemon(query_config("scram-sha-256", 0));
  const std::string elsewhere =
      refusal(daemon.conninfo("no_such_database", "query_scram") + " password='q scram'");
  EXPECT_TRUE(contains(elsewhere, "FATAL:  password authentication failed for user \"query_scram\""))
      << elsewhere;
  EXPECT_TRUE(
      harness::wait_until([&] { return contains(daemon.log(), "is not configured for auth.query"); }));
}

TEST(AuthQuery, AnswersAreCachedUntilCacheSOrAReload) {
  set_role("query_cached", "first", "scram-sha-256");
  harness::Sluiced daemon(query_config("scram-sha-256", 600));
  EXPECT_EQ(refusal(as(daemon, "query_cached", "first")), "");
  set_role("query_cached", "second", "scram-sha-256");
  // Within cache_s the secret sluiced looked up stands.
  EXPECT_EQ(refusal(as(daemon, "query_cached", "first")), "");
  EXPECT_TRUE(contains(refusal(as(daemon, "query_cached", "second")), "password authentication failed"));
  // A reload empties the cache.
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  EXPECT_TRUE(harness::wait_until([&] { return refusal(as(daemon, "query_cached", "second")).empty(); }));
  EXPECT_TRUE(contains(refusal(as(daemon, "query_cached", "first")), "password authentication failed"));
}

TEST(AuthQuery, WithoutACacheEveryLoginAsks) {
  set_role("query_uncached", "first", "scram-sha-256");
  harness::Sluiced daemon(query_config("scram-sha-256", 0));
  EXPECT_EQ(refusal(as(daemon, "query_uncached", "first")), "");
  set_role("query_uncached", "second", "scram-sha-256");
  EXPECT_EQ(refusal(as(daemon, "query_uncached", "second")), "");
}

TEST(AuthQuery, AQueryThatFailsRefusesTheLoginAndSaysWhyInTheLog) {
  auto config = harness::default_config(
      {.overrides = {{"auth",
                      {{"type", "scram-sha-256"},
                       {"user", harness::os_user()},
                       {"query", "SELECT usename, passwd FROM no_such_table WHERE usename = $1"}}}}});
  harness::Sluiced daemon(std::move(config));
  const std::string refused = refusal(as(daemon, "anyone", "x"));
  EXPECT_TRUE(contains(refused, "FATAL:  could not look up the password of role \"anyone\"")) << refused;
  EXPECT_TRUE(harness::wait_until(
      [&] { return contains(daemon.log(), "relation \"no_such_table\" does not exist"); }));
  // The pool's server survived the failed query: a client of another method still works (trust on
  // the Unix socket is not configured here, so ask again: same clear refusal, no crash).
  EXPECT_TRUE(contains(refusal(as(daemon, "anyone", "x")), "could not look up"));
}

TEST(AuthQuery, RoleNamesAreQuotedNotSpliced) {
  harness::Sluiced daemon(query_config("scram-sha-256", 60));
  // A name that would end the literal early: it is looked up as the name it is, and not found.
  const std::string refused =
      refusal("host=" + daemon.socket_dir() + " port=" + std::to_string(daemon.port()) +
              " dbname=postgres user='x\\' OR usename <> \\'' password=x");
  EXPECT_TRUE(contains(refused, "password authentication failed")) << refused;
  EXPECT_TRUE(harness::wait_until([&] { return contains(daemon.log(), "was not found by auth.query"); }));
}

// A lookup connection with a client-only encoding (SJIS: 0x95 0x5C is one character) cannot be
// talked out of its literal by a name whose multibyte character swallows the quoting backslash —
// also where backslash_quote is on (its default, safe_encoding, would refuse the query).
TEST(AuthQuery, RoleNamesStayQuotedUnderAClientOnlyEncoding) {
  set_role("query_scram", "q scram", "scram-sha-256");
  auto config = query_config("scram-sha-256", 0);
  json text = json::parse(config.text);
  for (auto& [name, database] : text["databases"].items())
    database["conninfo"] =
        database["conninfo"].get<std::string>() + " client_encoding=SJIS options='-c backslash_quote=on'";
  config.text = text.dump();
  harness::Sluiced daemon(std::move(config));
  const std::string role =
      "\x95\\' UNION SELECT usename, passwd FROM pg_shadow WHERE usename = $$query_scram$$--";
  const char* keys[] = {"host", "port", "dbname", "user", "password", nullptr};
  const std::string port = std::to_string(daemon.port());
  const char* values[] = {
      daemon.socket_dir().c_str(), port.c_str(), "postgres", role.c_str(), "q scram", nullptr};
  const PgConn injected(PQconnectdbParams(keys, values, 0));
  EXPECT_NE(PQstatus(injected.get()), CONNECTION_OK) << "the name was spliced into auth.query";
  EXPECT_TRUE(contains(PQerrorMessage(injected.get()), "password authentication failed") ||
              contains(PQerrorMessage(injected.get()), "could not look up the password"))
      << PQerrorMessage(injected.get());
}

}  // namespace
