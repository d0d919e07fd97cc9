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

// As session_settings_query sends values: hex of their bytes.
std::string hex(const std::string& text) {
  static constexpr const char* kDigits = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : text) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0x0f];
  }
  return out;
}

const SessionBaseline kPlain("app", {});

TEST(SessionSettingsTest, LeavesOutWhatIsStillTheBaseline) {
  const auto settings = read_session_settings(reply({{"0", "search_path", hex("a, \"B\"")},
                                                     {"0", "work_mem", hex("7168")},
                                                     {"2", "session_authorization", hex("app")},
                                                     {"3", "role", hex("none")}}),
                                              kPlain);
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"search_path", "a, \"B\""}, {"work_mem", "7168"}}));
}

TEST(SessionSettingsTest, KeepsAChangedAuthorizationAndRoleLast) {
  const auto settings = read_session_settings(
      reply({{"2", "session_authorization", hex("low")}, {"3", "role", hex("reader")}}), kPlain);
  ASSERT_TRUE(settings);
  EXPECT_EQ(*settings, (SessionSettings{{"session_authorization", "low"}, {"role", "reader"}}));
}

// SET TRANSACTION's values show as session ones, and RESET ALL leaves them: they end with their
// transaction, so they are neither the client's nor left on the server.
TEST(SessionSettingsTest, LeavesOutSetTransaction) {
  const auto settings = read_session_settings(
      reply({{"0", "transaction_isolation", hex("serializable")}, {"0", "transaction_read_only", hex("on")}}),
      kPlain);
  ASSERT_TRUE(settings);
  EXPECT_TRUE(settings->empty());
}

// A role or custom setting from the pool's startup settings is the baseline, not the client's.
TEST(SessionSettingsTest, StartupRoleAndCustomSettingsAreTheBaseline) {
  const SessionBaseline startup("app", {{"role", "r1"}, {"app.tenant", "acme"}, {"work_mem", "7MB"}});
  const auto same =
      read_session_settings(reply({{"1", "app.tenant", hex("acme")}, {"3", "role", hex("r1")}}), startup);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->empty());
  const auto changed =
      read_session_settings(reply({{"1", "app.tenant", hex("")}, {"3", "role", hex("none")}}), startup);
  ASSERT_TRUE(changed);
  EXPECT_EQ(*changed, (SessionSettings{{"app.tenant", ""}, {"role", "none"}}));
}

TEST(SessionSettingsTest, LeavesOutCustomSettingsUnknownOrEmpty) {
  const auto settings = read_session_settings(
      reply({{"1", "app.tenant", hex("42")}, {"1", "app.gone", std::nullopt}, {"1", "app.reset", hex("")}}),
      kPlain);
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

// The lifted statement_timeout is the client's value noted before the read, when it is not what
// RESET gives; the value the read ran with is dropped.
TEST(SessionSettingsTest, TheLiftedStatementTimeoutIsTheClients) {
  const auto read = reply({{"0", "search_path", hex("x")}, {"0", "statement_timeout", hex("0")}});
  const auto own = read_client_settings(reply({{"5ms"}, {"0"}}), read, kPlain);
  ASSERT_TRUE(own);
  EXPECT_EQ(*own, (SessionSettings{{"statement_timeout", "5ms"}, {"search_path", "x"}}));
  const auto as_reset = read_client_settings(reply({{"30s"}, {"30s"}}), read, kPlain);
  ASSERT_TRUE(as_reset);
  EXPECT_EQ(*as_reset, (SessionSettings{{"search_path", "x"}}));
  EXPECT_FALSE(read_client_settings(reply({{"5ms"}}), read, kPlain));
}

TEST(SessionSettingsTest, RefusesValuesThatAreNotHex) {
  EXPECT_FALSE(read_session_settings(reply({{"0", "search_path", "abc"}}), kPlain));
  EXPECT_FALSE(read_session_settings(reply({{"0", "search_path", "zz"}}), kPlain));
}

// Names and values travel as hex of their bytes: no quoting to get wrong, in any client_encoding.
TEST(SessionSettingsTest, RestoreSendsBytesAsHex) {
  const std::string server_text = "', 'hex'), pg_catalog.current_setting('server_encoding'))";
  EXPECT_EQ(apply_session_settings_query({{"role", "it's \\"}}),
            "SELECT pg_catalog.set_config(pg_catalog.convert_from(pg_catalog.decode('726f6c65" + server_text +
                ", pg_catalog.convert_from(pg_catalog.decode('69742773205c" + server_text + ", false)");
}

}  // namespace
}  // namespace sluice::pool
