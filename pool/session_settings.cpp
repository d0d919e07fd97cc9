#include "pool/session_settings.h"

#include <algorithm>

#include "common/hex.h"

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

// The text whose bytes in the server encoding are `bytes`.
void append_server_text(std::string& out, std::string_view bytes) {
  out += "pg_catalog.convert_from(pg_catalog.decode('";
  append_hex(out, bytes);
  out += "', 'hex'), pg_catalog.current_setting('server_encoding'))";
}

// A setting's value as session_settings_query returns it.
std::string hex_of(std::string_view text) {
  return "pg_catalog.encode(pg_catalog.convert_to(" + std::string(text) +
         ", pg_catalog.current_setting('server_encoding')), 'hex')";
}

}  // namespace

std::string session_settings_query(const std::vector<std::string>& custom_names) {
  std::string sql;
  if (custom_names.empty()) {
    sql = "SELECT 0, name, " + hex_of("setting") + " FROM pg_catalog.pg_settings WHERE source = 'session' ";
  } else {
    // pg_settings is read once; a name an extension has since defined is in it already.
    sql = "WITH s AS (SELECT name, setting, source FROM pg_catalog.pg_settings) SELECT 0, name, " +
          hex_of("setting") + " FROM s WHERE source = 'session' UNION ALL SELECT 1, n, " +
          hex_of("pg_catalog.current_setting(n, true)") + " FROM pg_catalog.unnest(ARRAY[";
    const char* separator = "";
    for (const std::string& name : custom_names) {
      sql += separator;
      append_literal(sql, name);
      separator = ",";
    }
    sql += "]::pg_catalog.text[]) AS n WHERE NOT EXISTS (SELECT FROM s WHERE s.name = pg_catalog.lower(n)) ";
  }
  sql += "UNION ALL SELECT 2, 'session_authorization', " +
         hex_of("pg_catalog.current_setting('session_authorization')") + " UNION ALL SELECT 3, 'role', " +
         hex_of("pg_catalog.current_setting('role')") + " ORDER BY 1, 2";
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

void SessionBaseline::adopt(const LearntBaseline& learnt) {
  role = learnt.role;
  for (const auto& setting : learnt.custom) {
    const auto same = std::find_if(custom.begin(), custom.end(),
                                   [&](const SessionSetting& known) { return known.name == setting.name; });
    if (same == custom.end()) {
      custom.push_back(setting);
    } else {
      same->value = setting.value;
    }
  }
}

std::optional<std::string> setting_value_from_hex(std::string_view hex) { return from_hex(hex); }

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
    const auto decoded = from_hex(*row[2]);
    if (!decoded) return std::nullopt;
    const std::string& value = *decoded;
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
  constexpr std::string_view kStatementTimeout = "statement_timeout";
  const auto one_value = [](const std::vector<std::optional<std::string>>& row) {
    return row.size() == 1 && row[0].has_value();
  };
  if (lift.error || lift.rows.size() != 2 || !one_value(lift.rows[0]) || !one_value(lift.rows[1])) {
    return std::nullopt;
  }
  auto settings = read_session_settings(read, baseline);
  if (!settings) return std::nullopt;
  std::erase_if(*settings, [&](const SessionSetting& setting) { return setting.name == kStatementTimeout; });
  const std::string& own = *lift.rows[0][0];
  if (own != *lift.rows[1][0]) settings->insert(settings->begin(), {std::string(kStatementTimeout), own});
  return settings;
}

std::string apply_session_settings_query(const SessionSettings& settings) {
  std::string sql = "SELECT ";
  const char* separator = "";
  for (const auto& [name, value] : settings) {
    sql += separator;
    sql += "pg_catalog.set_config(";
    append_server_text(sql, name);
    sql += ", ";
    append_server_text(sql, value);
    sql += ", false)";
    separator = ", ";
  }
  return sql;
}

}  // namespace sluice::pool
