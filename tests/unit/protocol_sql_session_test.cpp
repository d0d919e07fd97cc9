// What a query does to session state, as transaction pooling must know it: a miss leaves a
// client's setting or role unread and on a server another client gets, a false hit costs a read
// and a reset, so the cases err towards a hit.
#include <gtest/gtest.h>

#include "protocol/sql_commands.h"

namespace sluice::protocol {
namespace {

using enum SqlSessionEffect;

TEST(SqlSessionTest, PlainQueriesTouchNothing) {
  EXPECT_EQ(find_sql_session_effect("SELECT abalance FROM pgbench_accounts WHERE aid = $1"), none);
  EXPECT_EQ(find_sql_session_effect("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"),
            none);
  EXPECT_EQ(find_sql_session_effect("select 'set role x', \"reset\" from settings"), none);
  EXPECT_EQ(find_sql_session_effect("BEGIN; SET LOCAL search_path = x; SET TRANSACTION READ ONLY; COMMIT"),
            none);
  EXPECT_EQ(find_sql_session_effect("set constraints all deferred"), none);
  EXPECT_EQ(find_sql_session_effect(""), none);
  EXPECT_EQ(find_sql_session_effect(";;; select 1;"), none);
}

TEST(SqlSessionTest, SessionSettingsNeedAReset) {
  EXPECT_EQ(find_sql_session_effect("SET search_path = x"), settings);
  EXPECT_EQ(find_sql_session_effect("set session search_path to x"), settings);
  EXPECT_EQ(find_sql_session_effect("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"), settings);
  EXPECT_EQ(find_sql_session_effect("select 1; Reset all"), settings);
  EXPECT_EQ(find_sql_session_effect("select set_config('search_path', 'x', false)"), settings);
  EXPECT_EQ(find_sql_session_effect("DISCARD ALL"), settings);
  EXPECT_EQ(find_sql_session_effect("do $$ begin perform 1; end $$"), settings);
  EXPECT_EQ(find_sql_session_effect("CALL my_procedure()"), settings);
  EXPECT_EQ(find_sql_session_effect("load 'auto_explain'"), settings);
  EXPECT_EQ(find_sql_session_effect("reset session authorization"), settings);
  EXPECT_EQ(find_sql_session_effect("RESET ROLE"), settings);
}

TEST(SqlSessionTest, RoleChangesAreFound) {
  EXPECT_EQ(find_sql_session_effect("SET ROLE low"), settings);
  EXPECT_EQ(find_sql_session_effect("set session role low"), settings);
  EXPECT_EQ(find_sql_session_effect("SET SESSION AUTHORIZATION low"), settings);
  EXPECT_EQ(find_sql_session_effect("select 1; set role low"), settings);
  EXPECT_EQ(find_sql_session_effect("select set_config('ROLE', 'low', false)"), settings);
  EXPECT_EQ(find_sql_session_effect("SELECT set_config ( 'session_authorization', 'low', true )"), settings);
  EXPECT_EQ(find_sql_session_effect("set local role low"), none);
  EXPECT_EQ(find_sql_session_effect("/* set role low */ select 1"), none);
}

}  // namespace
}  // namespace sluice::protocol

namespace sluice::protocol {
namespace {

using Names = std::vector<std::string>;

TEST(CustomSettingNamesTest, FoundWhereverSetOrResetNamesThem) {
  EXPECT_EQ(find_custom_setting_names("SET app.tenant = 42"), (Names{"app.tenant"}));
  EXPECT_EQ(find_custom_setting_names("set session My.Qualified.Guc to 'x'; reset local_x.y"),
            (Names{"my.qualified.guc", "local_x.y"}));
  EXPECT_EQ(find_custom_setting_names("SET LOCAL custom.\"bad-guc\" = 1"), (Names{"custom.bad-guc"}));
  EXPECT_EQ(find_custom_setting_names("select set_config('app.user', 'x', false), 1; SET a.b TO 1"),
            (Names{"app.user", "a.b"}));
}

TEST(CustomSettingNamesTest, PlainSettingsAndOtherTextAreNotNames) {
  EXPECT_EQ(find_custom_setting_names("SET search_path = a.b"), Names{});
  EXPECT_EQ(find_custom_setting_names("select 'set app.x = 1', app.x from app"), Names{});
  EXPECT_EQ(find_custom_setting_names("SET SESSION AUTHORIZATION x; reset all"), Names{});
  EXPECT_EQ(find_custom_setting_names("select set_config(name, 'x', false)"), Names{});
  EXPECT_EQ(find_custom_setting_names("SET app."), (Names{}));
}

}  // namespace
}  // namespace sluice::protocol
