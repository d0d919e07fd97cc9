#include "pool/session_settings.h"

#include <algorithm>
#include <array>

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

SessionBaseline::SessionBaseline(std::string login_user,
                                 const std::vector<std::pair<std::string, std::string>>& startup)
    : session_authorization(std::move(login_user)) {
  for (const auto& [name, value] : startup) {
    if (name == "role") role = value;
    if (name.find('.') != std::string::npos) custom.push_back({name, value});
  }
}

std::string_view SessionBaseline::custom_value(std::string_view name) const {
  for (const auto& setting : custom) {
    if (setting.name == name) return setting.value;
  }
  return "";
}

std::optional<SessionSettings> read_session_settings(const protocol::QueryReply& reply,
                                                     const SessionBaseline& baseline) {
  if (reply.error) return std::nullopt;
  SessionSettings settings;
  for (const auto& row : reply.rows) {
    if (row.size() != 3 || !row[0] || !row[1]) return std::nullopt;
    const std::string& rank = *row[0];
    const std::string& name = *row[1];
    if (rank == "1" && !row[2]) continue;  // a custom setting this server does not know
    if (!row[2]) return std::nullopt;
    const std::string& value = *row[2];
    if (rank == "0" && name.starts_with("transaction_")) continue;
    if (rank == "1" && value == baseline.custom_value(name)) continue;
    if (rank == "2" && value == baseline.session_authorization) continue;
    if (rank == "3" && value == baseline.role) continue;
    settings.push_back({name, value});
  }
  return settings;
}

std::optional<SessionSettings> read_client_settings(const protocol::QueryReply& lift,
                                                    const protocol::QueryReply& read,
                                                    const SessionBaseline& baseline) {
  static constexpr std::array<std::string_view, 2> kLifted = {"statement_timeout", "client_encoding"};
  const auto whole_row = [](const std::vector<std::optional<std::string>>& row) {
    return row.size() == kLifted.size() &&
           std::all_of(row.begin(), row.end(), [](const auto& v) { return v.has_value(); });
  };
  if (lift.error || lift.rows.size() != 2 || !whole_row(lift.rows[0]) || !whole_row(lift.rows[1])) {
    return std::nullopt;
  }
  auto settings = read_session_settings(read, baseline);
  if (!settings) return std::nullopt;
  std::erase_if(*settings, [&](const SessionSetting& setting) {
    return std::find(kLifted.begin(), kLifted.end(), setting.name) != kLifted.end();
  });
  for (std::size_t i = kLifted.size(); i-- > 0;) {
    const std::string& own = *lift.rows[0][i];
    if (own != *lift.rows[1][i]) settings->insert(settings->begin(), {std::string(kLifted[i]), own});
  }
  return settings;
}

std::string apply_session_settings_query(const SessionSettings& settings) {
  std::string body = "BEGIN PERFORM ";
  const char* separator = "";
  for (const auto& [name, value] : settings) {
    body += separator;
    body += "pg_catalog.set_config(";
    append_literal(body, name);
    body += ',';
    append_literal(body, value);
    body += ",false)";
    separator = ",";
  }
  body +=
      "; EXCEPTION WHEN OTHERS THEN RAISE WARNING USING MESSAGE = SQLERRM, ERRCODE = SQLSTATE; "
      "PERFORM pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid()); END";
  std::string sql = "BEGIN;DO ";
  append_literal(sql, body);
  sql += ";COMMIT";
  return sql;
}

}  // namespace sluice::pool
