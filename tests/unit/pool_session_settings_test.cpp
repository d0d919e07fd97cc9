// A client's session settings: read from the reply to session_settings_query against the pool's
// baseline, and put back with one Query that fails closed and whose literals survive any
// standard_conforming_strings.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "pool/session_settings.h"
#include "protocol/query_replies.h"

namespace sluice::pool {
namespace {

using Row = std::vector<std::optional<std::string>>;

protocol::QueryReply reply(std::vector<Row> rows) { return {.rows = std::move(rows), .error = std::nullopt}; }

const SessionBaseline kPlain("app", {});

TEST(SessionSettingsTest, LeavesOutWhatIsStillTheBaseline) {
  const auto settings = read_session_settings(reply({{"0", "search_path", "a, \"B\""},
                                                     {"0", "work_mem", "7168"},
                                                     {"2", "session_authorization", "app"},
                                                     {"3", "role", "none"}}),
                                              kPlain);
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"search_path", "a, \"B\""}, {"work_mem", "7168"}}));
}

TEST(SessionSettingsTest, KeepsAChangedAuthorizationAndRoleLast) {
  const auto settings =
      read_session_settings(reply({{"2", "session_authorization", "low"}, {"3", "role", "reader"}}), kPlain);
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"session_authorization", "low"}, {"role", "reader"}}));
}

// SET TRANSACTION's values show as session ones, and RESET ALL leaves them: they end with their
// transaction, so they are neither the client's nor left on the server.
TEST(SessionSettingsTest, LeavesOutSetTransaction) {
  const auto settings = read_session_settings(
      reply({{"0", "transaction_isolation", "serializable"}, {"0", "transaction_read_only", "on"}}), kPlain);
  ASSERT_TRUE(settings);
  EXPECT_TRUE(settings->empty());
}

// A role or custom setting from the pool's startup settings is the baseline, not the client's.
TEST(SessionSettingsTest, StartupRoleAndCustomSettingsAreTheBaseline) {
  const SessionBaseline startup("app", {{"role", "r1"}, {"app.tenant", "acme"}, {"work_mem", "7MB"}});
  const auto same = read_session_settings(reply({{"1", "app.tenant", "acme"}, {"3", "role", "r1"}}), startup);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->empty());
  const auto changed =
      read_session_settings(reply({{"1", "app.tenant", ""}, {"3", "role", "none"}}), startup);
  ASSERT_TRUE(changed);
  EXPECT_EQ(*changed, (SessionSettings{{"app.tenant", ""}, {"role", "none"}}));
}

TEST(SessionSettingsTest, LeavesOutCustomSettingsUnknownOrEmpty) {
  const auto settings = read_session_settings(
      reply({{"1", "app.tenant", "42"}, {"1", "app.gone", std::nullopt}, {"1", "app.reset", ""}}), kPlain);
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"app.tenant", "42"}}));
}

TEST(SessionSettingsTest, RefusesWhatTheQueryCannotReturn) {
  EXPECT_FALSE(read_session_settings(reply({{"0", "search_path"}}), kPlain));
  EXPECT_FALSE(read_session_settings(reply({{"0", std::nullopt, "x"}}), kPlain));
  protocol::QueryReply failed = reply({});
  failed.error = protocol::ErrorFields{"ERROR", "42501", "denied"};
  EXPECT_FALSE(read_session_settings(failed, kPlain));
}

// The lifted settings are the client's values noted before the read, when they are not what RESET
// gives; the values the read ran with are dropped.
TEST(SessionSettingsTest, LiftedSettingsAreTheClientsOwn) {
  const auto read = reply({{"0", "search_path", "x"}, {"0", "statement_timeout", "0"}});
  const auto own = read_client_settings(reply({{"5ms", "LATIN1"}, {"0", "UTF8"}}), read, kPlain);
  ASSERT_TRUE(own);
  EXPECT_EQ(*own, (SessionSettings{
                      {"statement_timeout", "5ms"}, {"client_encoding", "LATIN1"}, {"search_path", "x"}}));
  const auto as_reset = read_client_settings(reply({{"30s", "UTF8"}, {"30s", "UTF8"}}), read, kPlain);
  ASSERT_TRUE(as_reset);
  EXPECT_EQ(*as_reset, (SessionSettings{{"search_path", "x"}}));
  EXPECT_FALSE(read_client_settings(reply({{"5ms", "UTF8"}}), read, kPlain));
}

TEST(SessionSettingsTest, RestoreQuotesEveryValueAndFailsClosed) {
  EXPECT_EQ(
      apply_session_settings_query({{"search_path", "it's \\ here"}, {"role", "r"}}),
      "BEGIN;DO E'BEGIN PERFORM pg_catalog.set_config(E''search_path'',E''it''''s \\\\\\\\ here'',false),"
      "pg_catalog.set_config(E''role'',E''r'',false); EXCEPTION WHEN OTHERS THEN RAISE WARNING USING "
      "MESSAGE = SQLERRM, ERRCODE = SQLSTATE; PERFORM "
      "pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid()); END';COMMIT");
}

}  // namespace
}  // namespace sluice::pool
