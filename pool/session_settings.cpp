#include "pool/session_settings.h"

namespace sluice::pool {
namespace {

// An escape string literal: the same under any standard_conforming_strings.
void append_literal(std::string& out, std::string_view text) {
  out += "E'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') out += c;
    out += c;
  }
  out += '\'';
}

}  // namespace

std::string session_settings_query(const std::vector<std::string>& custom_names) {
  std::string sql;
  if (custom_names.empty()) {
    sql = "SELECT 0, name, setting FROM pg_catalog.pg_settings WHERE source = 'session' ";
  } else {
    // pg_settings is read once; a name an extension has since defined is in it already.
    sql =
        "WITH s AS (SELECT name, setting, source FROM pg_catalog.pg_settings) "
        "SELECT 0, name, setting FROM s WHERE source = 'session' "
        "UNION ALL SELECT 1, n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[";
    const char* separator = "";
    for (const std::string& name : custom_names) {
      sql += separator;
      append_literal(sql, name);
      separator = ",";
    }
    sql += "]::pg_catalog.text[]) AS n WHERE NOT EXISTS (SELECT FROM s WHERE s.name = pg_catalog.lower(n)) ";
  }
  sql +=
      "UNION ALL SELECT 2, 'session_authorization', pg_catalog.current_setting('session_authorization') "
      "UNION ALL SELECT 3, 'role', pg_catalog.current_setting('role') ORDER BY 1, 2";
  return sql;
}

std::optional<SessionSettings> read_session_settings(const protocol::QueryReply& reply,
                                                     std::string_view login_user) {
  if (reply.error) return std::nullopt;
  SessionSettings settings;
  for (const auto& row : reply.rows) {
    if (row.size() != 3 || !row[0] || !row[1]) return std::nullopt;
    const std::string& rank = *row[0];
    const std::string& name = *row[1];
    if (rank == "1" && (!row[2] || row[2]->empty())) continue;  // a custom setting unknown or empty here
    if (!row[2]) return std::nullopt;
    const std::string& value = *row[2];
    if (rank == "2" && name == "session_authorization" && value == login_user) continue;
    if (rank == "3" && name == "role" && value == "none") continue;
    settings.push_back({name, value});
  }
  return settings;
}

std::optional<SessionSettings> read_client_settings(const protocol::QueryReply& lift,
                                                    const protocol::QueryReply& read,
                                                    std::string_view login_user) {
  constexpr std::string_view kStatementTimeout = "statement_timeout";
  if (lift.error || lift.rows.size() != 2 || lift.rows[0].size() != 1 || lift.rows[1].size() != 1 ||
      !lift.rows[0][0] || !lift.rows[1][0]) {
    return std::nullopt;
  }
  auto settings = read_session_settings(read, login_user);
  if (!settings) return std::nullopt;
  std::erase_if(*settings, [&](const SessionSetting& setting) { return setting.name == kStatementTimeout; });
  const std::string& own = *lift.rows[0][0];
  if (own != *lift.rows[1][0]) settings->insert(settings->begin(), {std::string(kStatementTimeout), own});
  return settings;
}

std::string apply_session_settings_query(const SessionSettings& settings) {
  std::string sql = "BEGIN;SELECT ";
  const char* separator = "";
  for (const auto& [name, value] : settings) {
    sql += separator;
    sql += "pg_catalog.set_config(";
    append_literal(sql, name);
    sql += ',';
    append_literal(sql, value);
    sql += ",false)";
    separator = ",";
  }
  sql += ";COMMIT";
  return sql;
}

}  // namespace sluice::pool
