// A client's session settings: read from the reply to kSessionSettingsQuery, and put back with
// one Query whose literals survive any standard_conforming_strings.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "pool/session_settings.h"
#include "protocol/backend_messages.h"
#include "protocol/query_replies.h"

namespace sluice::pool {
namespace {

using Row = std::vector<std::optional<std::string>>;

protocol::QueryReply reply(std::vector<Row> rows) { return {.rows = std::move(rows), .error = std::nullopt}; }

TEST(SessionSettingsTest, LeavesOutTheLoginUserAndNoRole) {
  const auto settings = read_session_settings(reply({{"0", "search_path", "a, \"B\""},
                                                     {"0", "work_mem", "7168"},
                                                     {"2", "session_authorization", "app"},
                                                     {"3", "role", "none"}}),
                                              "app");
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"search_path", "a, \"B\""}, {"work_mem", "7168"}}));
}

TEST(SessionSettingsTest, KeepsAChangedAuthorizationAndRoleLast) {
  const auto settings =
      read_session_settings(reply({{"2", "session_authorization", "low"}, {"3", "role", "reader"}}), "app");
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"session_authorization", "low"}, {"role", "reader"}}));
}

TEST(SessionSettingsTest, LeavesOutCustomSettingsUnknownOrEmpty) {
  const auto settings = read_session_settings(
      reply({{"1", "app.tenant", "42"}, {"1", "app.gone", std::nullopt}, {"1", "app.reset", ""}}), "app");
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"app.tenant", "42"}}));
}

TEST(SessionSettingsTest, RefusesWhatTheQueryCannotReturn) {
  EXPECT_FALSE(read_session_settings(reply({{"0", "search_path"}}), "app"));
  EXPECT_FALSE(read_session_settings(reply({{"0", std::nullopt, "x"}}), "app"));
  protocol::QueryReply failed = reply({});
  failed.error = protocol::ErrorFields{"ERROR", "42501", "denied"};
  EXPECT_FALSE(read_session_settings(failed, "app"));
}

// The client's statement_timeout is the one noted before the read lifted it, when it is not what
// RESET gives; the lifted value the read saw is dropped.
TEST(SessionSettingsTest, TheStatementTimeoutNotedBeforeTheLiftIsTheClients) {
  const auto read = reply({{"0", "search_path", "x"}, {"0", "statement_timeout", "0"}});
  const auto own = read_client_settings(reply({{"5ms"}, {"0"}}), read, "app");
  ASSERT_TRUE(own);
  EXPECT_EQ(*own, (SessionSettings{{"statement_timeout", "5ms"}, {"search_path", "x"}}));
  const auto as_reset = read_client_settings(reply({{"30s"}, {"30s"}}), read, "app");
  ASSERT_TRUE(as_reset);
  EXPECT_EQ(*as_reset, (SessionSettings{{"search_path", "x"}}));
  EXPECT_FALSE(read_client_settings(reply({{"5ms"}}), read, "app"));
}

TEST(SessionSettingsTest, ApplyQueryQuotesEveryValue) {
  EXPECT_EQ(apply_session_settings_query({{"search_path", "it's \\ here"}, {"role", "r"}}),
            "BEGIN;SELECT pg_catalog.set_config(E'search_path',E'it''s \\\\ here',false),"
            "pg_catalog.set_config(E'role',E'r',false);COMMIT");
}

}  // namespace
}  // namespace sluice::pool
