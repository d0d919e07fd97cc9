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
                                                     {"1", "session_authorization", "app"},
                                                     {"2", "role", "none"}}),
                                              "app");
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"search_path", "a, \"B\""}, {"work_mem", "7168"}}));
}

TEST(SessionSettingsTest, KeepsAChangedAuthorizationAndRoleLast) {
  const auto settings =
      read_session_settings(reply({{"1", "session_authorization", "low"}, {"2", "role", "reader"}}), "app");
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"session_authorization", "low"}, {"role", "reader"}}));
}

TEST(SessionSettingsTest, RefusesWhatTheQueryCannotReturn) {
  EXPECT_FALSE(read_session_settings(reply({{"0", "search_path"}}), "app"));
  EXPECT_FALSE(read_session_settings(reply({{"0", std::nullopt, "x"}}), "app"));
  protocol::QueryReply failed = reply({});
  failed.error = protocol::ErrorFields{"ERROR", "42501", "denied"};
  EXPECT_FALSE(read_session_settings(failed, "app"));
}

TEST(SessionSettingsTest, ApplyQueryQuotesEveryValue) {
  EXPECT_EQ(apply_session_settings_query({{"search_path", "it's \\ here"}, {"role", "r"}}),
            "BEGIN;SELECT pg_catalog.set_config(E'search_path',E'it''s \\\\ here',false),"
            "pg_catalog.set_config(E'role',E'r',false);COMMIT");
}

}  // namespace
}  // namespace sluice::pool
