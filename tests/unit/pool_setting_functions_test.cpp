// The catalog's answer about functions that may change settings, and the watch that says when to
// ask again: a reply that cannot be read leaves the pool as cautious as it was.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "pool/setting_functions.h"

namespace sluice::pool {
namespace {

using Row = std::vector<std::optional<std::string>>;
using Clock = SettingFunctionWatch::Clock;

protocol::QueryReply reply(std::vector<Row> rows) { return {.rows = std::move(rows), .error = std::nullopt}; }

TEST(SettingFunctionsTest, RowsAreSortedByKind) {
  const auto read = read_setting_functions(reply({{"f", "Fn_Quoted", std::nullopt},
                                                  {"f", "audit", std::nullopt},
                                                  {"t", "Audited", std::nullopt},
                                                  {"c", "App.Tenant", std::nullopt},
                                                  {"f", "audit", std::nullopt},
                                                  {"b", "role", "6c6f77"},
                                                  {"b", "myapp.base", "61"},
                                                  {"b", "myapp.unknown", std::nullopt}}));
  ASSERT_TRUE(read);
  EXPECT_EQ(read->names.functions, (std::vector<std::string>{"audit", "fn_quoted"}));
  EXPECT_EQ(read->names.tables, (std::vector<std::string>{"audited"}));
  EXPECT_EQ(read->custom_names, (std::vector<std::string>{"app.tenant"}));
  EXPECT_FALSE(read->names.everything);
  ASSERT_TRUE(read->baseline);
  EXPECT_EQ(read->baseline->role, "low");
  EXPECT_EQ(read->baseline->custom, (std::vector<SessionSetting>{{"myapp.base", "a"}}));
}

// Each says what was wrong, for the log's warning.
TEST(SettingFunctionsTest, AnUnreadableReplyIsNoAnswerAndSaysWhy) {
  const auto error_of = [](const protocol::QueryReply& unreadable) {
    const auto read = read_setting_functions(unreadable);
    return read ? std::string("(read)") : read.error();
  };
  EXPECT_EQ(error_of(reply({{"f", "x", std::nullopt}})), "it has no row for the role");
  EXPECT_EQ(error_of(reply({{"x", "y", std::nullopt}, {"b", "role", "6e6f6e65"}})),
            "its rows are not the query's");
  EXPECT_EQ(error_of(reply({{"f", "x"}, {"b", "role", "6e6f6e65"}})), "its rows are not the query's");
  EXPECT_EQ(error_of(reply({{"b", "role", "zz"}})), "its rows are not the query's");
  protocol::QueryReply failed = reply({});
  failed.error =
      protocol::ErrorFields{.severity = "ERROR", .sqlstate = "57014", .message = "canceling statement"};
  EXPECT_EQ(error_of(failed), "the server answered ERROR 57014 canceling statement");
}

TEST(SettingFunctionsTest, TheWatchCountsEveryCallUntilRead) {
  SettingFunctionWatch watch;
  const auto now = Clock::now();
  EXPECT_TRUE(watch.names().everything);
  EXPECT_TRUE(watch.due(now));
  watch.read_started();
  EXPECT_FALSE(watch.due(now));
  watch.read_finished(fail("no reply"), now);  // failed: still cautious, asked again a little later
  EXPECT_TRUE(watch.names().everything);
  EXPECT_FALSE(watch.due(now));
  EXPECT_TRUE(watch.due(now + SettingFunctionWatch::kRetryAfterFailure));
  const auto generation = watch.generation();
  watch.read_started();
  watch.read_finished(read_setting_functions(reply({{"b", "role", "6e6f6e65"}})), now);
  EXPECT_TRUE(watch.names().none());
  EXPECT_TRUE(watch.watches_nothing());
  EXPECT_NE(watch.generation(), generation);
  EXPECT_FALSE(watch.due(now));
  EXPECT_TRUE(watch.due(now + SettingFunctionWatch::kMaxAge));
}

// DDL seen while a read runs may be newer than what the read finds: it is asked again at once, and
// until then every call counts.
TEST(SettingFunctionsTest, StaleDuringAReadStaysStale) {
  SettingFunctionWatch watch;
  const auto now = Clock::now();
  watch.read_started();
  watch.mark_stale();
  watch.read_finished(read_setting_functions(reply({{"b", "role", "6e6f6e65"}})), now);
  EXPECT_TRUE(watch.due(now));
  EXPECT_TRUE(watch.names().everything) << "every call counts until a newer read";
  EXPECT_FALSE(watch.watches_nothing());
  watch.read_started();
  watch.read_finished(read_setting_functions(reply({{"b", "role", "6e6f6e65"}})), now);
  EXPECT_TRUE(watch.names().none());
  EXPECT_FALSE(watch.due(now));
}

TEST(SettingFunctionsTest, ALearntBaselineOverridesTheStartupOne) {
  SessionBaseline baseline("alice", {{"role", "r"}, {"app.x", "1"}});
  baseline.adopt({"low", {{"app.x", "2"}, {"app.y", "3"}}});
  EXPECT_EQ(baseline.role, "low");
  EXPECT_EQ(baseline.custom_value("app.x"), "2");
  EXPECT_EQ(baseline.custom_value("app.y"), "3");
  EXPECT_EQ(baseline.session_authorization, "alice");
}

}  // namespace
}  // namespace sluice::pool
