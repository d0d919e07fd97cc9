// A client's session-level settings in transaction mode: what its SETs,
// RESETs, set_config() calls, SET ROLE and SET SESSION AUTHORIZATION left in
// force, beyond the startup settings its pool's servers were opened with.
// They are read from the server after a transaction that may have changed
// them (PostgreSQL has already applied its own rules: a rolled-back SET is
// gone, SET LOCAL has ended), and put on whichever server runs the client's
// next transaction.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/query_replies.h"

namespace sluice::pool {

struct SessionSetting {
  std::string name;
  std::string value;
  bool operator==(const SessionSetting&) const = default;
};
// In the order they must be applied: plain settings first (some need the
// login role's rights), then session_authorization, then role.
using SessionSettings = std::vector<SessionSetting>;

// Lists a server's session-level settings, role and session authorization
// included, in the order above (three columns: rank, name, value). Custom
// settings ("app.tenant") are not in pg_settings: those the client's SQL
// named are asked for by name. Values come as hex of their bytes in the
// server encoding, whatever the session's client_encoding.
std::string session_settings_query(const std::vector<std::string>& custom_names);

// Sent before session_settings_query when a client's settings are read: the
// client's statement_timeout could cancel the read (pg_settings takes a few
// milliseconds on a fresh server), so it is noted (a row with the client's
// value, then one with what RESET gives) and lifted for the read.
inline constexpr std::string_view kLiftForReadQuery =
    "SELECT pg_catalog.current_setting('statement_timeout'); RESET statement_timeout; "
    "SELECT pg_catalog.current_setting('statement_timeout'); SET statement_timeout = 0";

// What a server of the pool has at its reset values, as read from one: its role and the custom
// settings ALTER ROLE / ALTER DATABASE ... SET give (pg_db_role_setting), which the startup
// settings alone do not tell.
struct LearntBaseline {
  std::string role;
  std::vector<SessionSetting> custom;
};

// What a server of the pool has before any client changes it: the login user
// as session authorization, and the role and custom settings the pool's
// startup settings give (none by default), or a server was found to have.
struct SessionBaseline {
  std::string session_authorization;
  std::string role = "none";
  std::vector<SessionSetting> custom;  // startup settings with a '.' in the name

  SessionBaseline(std::string login_user, const std::vector<std::pair<std::string, std::string>>& startup);
  [[nodiscard]] std::string_view custom_value(std::string_view name) const;
  void adopt(const LearntBaseline& learnt);
};

// A value as the queries here return it (hex of its bytes); nullopt when it is not that.
std::optional<std::string> setting_value_from_hex(std::string_view hex);

// The settings in one reply to session_settings_query that differ from the
// baseline. The transaction_* ones (SET TRANSACTION's, which RESET ALL leaves)
// are left out: they end with their transaction. nullopt when the reply is
// not what the query returns.
std::optional<SessionSettings> read_session_settings(const protocol::QueryReply& reply,
                                                     const SessionBaseline& baseline);

// A client's settings from the replies to kLiftForReadQuery and then
// session_settings_query: the lifted statement_timeout is the client's own
// value (when it differs from what RESET gives), not the one the read ran with.
std::optional<SessionSettings> read_client_settings(const protocol::QueryReply& lift,
                                                    const protocol::QueryReply& read,
                                                    const SessionBaseline& baseline);

// One simple-query string that puts `settings` on a server at the pool's
// baseline, all or none (one statement). Names and values travel as hex of
// their bytes in the server encoding, safe under any client_encoding. The
// client's own messages wait for its ReadyForQuery: should PostgreSQL refuse
// one (a role no longer granted), none of them has reached the server.
std::string apply_session_settings_query(const SessionSettings& settings);

// A client that carries on after a transaction that may have changed its
// settings hears them here once its server's release has read them
// (nullopt, with the reason, when they could not be read).
class SettingsReceiver {
 public:
  virtual void on_settings_captured(std::optional<SessionSettings> settings, const std::string& why_not) = 0;

 protected:
  ~SettingsReceiver() = default;
};

// Shared by the client and its server's teardown; the client clears
// `receiver` when it goes first.
struct SettingsCapture {
  SettingsReceiver* receiver = nullptr;
  std::vector<std::string> custom_names;  // see session_settings_query
};

}  // namespace sluice::pool
