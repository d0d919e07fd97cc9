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

std::optional<SessionSettings> read_session_settings(const protocol::QueryReply& reply,
                                                     std::string_view login_user) {
  if (reply.error) return std::nullopt;
  SessionSettings settings;
  for (const auto& row : reply.rows) {
    if (row.size() != 3 || !row[0] || !row[1] || !row[2]) return std::nullopt;
    const std::string& name = *row[1];
    const std::string& value = *row[2];
    if (name == "session_authorization" && *row[0] == "1" && value == login_user) continue;
    if (name == "role" && *row[0] == "2" && value == "none") continue;
    settings.push_back({name, value});
  }
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
