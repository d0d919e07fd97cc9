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
// named are asked for by name.
std::string session_settings_query(const std::vector<std::string>& custom_names);

// Sent before session_settings_query when a client's settings are read: the
// client's own statement_timeout could cancel the read (pg_settings takes a
// few milliseconds on a fresh server), so it is noted (two rows: the client's
// value, then the value RESET gives) and lifted for the read.
inline constexpr std::string_view kLiftStatementTimeoutQuery =
    "SELECT pg_catalog.current_setting('statement_timeout'); RESET statement_timeout; "
    "SELECT pg_catalog.current_setting('statement_timeout'); SET statement_timeout = 0";

// The settings in one reply to session_settings_query, leaving out a custom
// setting that is empty or unknown, a session authorization that is still the
// login user and a role that is still none.
// nullopt when the reply is not what the query returns.
std::optional<SessionSettings> read_session_settings(const protocol::QueryReply& reply,
                                                     std::string_view login_user);

// A client's settings from the replies to kLiftStatementTimeoutQuery and then
// session_settings_query: its statement_timeout is the one noted (when it is
// not what RESET gives), not the lifted one.
std::optional<SessionSettings> read_client_settings(const protocol::QueryReply& lift,
                                                    const protocol::QueryReply& read,
                                                    std::string_view login_user);

// One simple-query string that puts `settings` on a server at the pool's
// baseline. It runs in a transaction block so that, should PostgreSQL refuse
// one (a role no longer granted), the block is left failed and the client's
// statements sent behind it cannot run without them.
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
