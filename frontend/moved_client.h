// A client between two processes in a live upgrade (README "Live upgrade"): everything of its
// session that sluiced holds, which the old process sends along with its socket and the new one
// adopts it with, without a word to the client. Only a client at rest moves (no server held, not
// in a transaction, nothing read and unprocessed): what the kernel holds of its input travels in
// the socket. Pure data and its JSON form, unit tested; a message that is not exactly this form
// is refused.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "auth/scram_client.h"
#include "common/result.h"
#include "config/config.h"
#include "daemon/listener.h"
#include "pool/server_connection.h"
#include "pool/session_settings.h"
#include "protocol/startup_settings.h"

namespace sluice::frontend {

struct MovedClient {
  std::uint64_t old_id = 0;  // its id in the old process, for the logs
  daemon::Transport transport = daemon::Transport::unix_socket;
  std::string user;
  std::string database;
  protocol::StartupSettings startup_settings;  // its pool's key
  pool::SessionSettings settings;              // what its SETs left in force
  std::vector<std::string> custom_setting_names;
  // Its named protocol-level prepared statements: its name for each, and the Parse body after the
  // name (query\0, parameter types).
  std::vector<std::pair<std::string, std::string>> statements;
  std::uint32_t cancel_process_id = 0;
  std::uint32_t cancel_secret = 0;
  std::optional<config::AuthType> auth_method;
  // SCRAM pass-through: its role's keys, which the new process's servers log in with.
  std::optional<auth::ScramKeys> scram_keys;
  // Session mode, or pinned in transaction mode: the server it holds, which moves with it (its
  // socket is the message's second).
  std::optional<pool::MovedServer> server;
  std::string pin_reason;  // transaction mode: why it keeps its server (empty: it does not)

  bool operator==(const MovedClient&) const = default;
};

// Byte strings travel as hex: names, values and SQL need not be UTF-8.
nlohmann::json moved_client_to_json(const MovedClient& client);
// An error names what is missing or malformed.
Result<MovedClient> moved_client_from_json(const nlohmann::json& message);

}  // namespace sluice::frontend
