#include "frontend/moved_client.h"

#include <array>
#include <limits>

#include "common/hex.h"
#include "frontend/client_auth.h"

namespace sluice::frontend {
namespace {

using nlohmann::json;

json pairs_to_json(const std::vector<std::pair<std::string, std::string>>& pairs) {
  json out = json::array();
  for (const auto& [name, value] : pairs) out.push_back({to_hex(name), to_hex(value)});
  return out;
}

std::string digest_hex(const auth::Digest& digest) {
  return to_hex({reinterpret_cast<const char*>(digest.data()), digest.size()});
}

// Reads a message field by field; the first thing wrong is the error, and the rest reads as empty.
class FieldReader {
 public:
  explicit FieldReader(const json& message) : message_(message) {}

  const json* field(const char* name, json::value_t type) {
    const auto found = message_.is_object() ? message_.find(name) : message_.end();
    if (found == message_.end() || found->type() != type) {
      refuse(std::string("\"") + name + "\" is missing or of the wrong type");
      return nullptr;
    }
    return &*found;
  }
  std::string bytes(const char* name) {
    const json* value = field(name, json::value_t::string);
    return value != nullptr ? bytes_of(*value, name) : std::string();
  }
  std::string bytes_of(const json& value, const char* what) {
    auto decoded = value.is_string() ? from_hex(value.get_ref<const std::string&>()) : std::nullopt;
    if (!decoded) refuse(std::string("\"") + what + "\" is not hex");
    return decoded.value_or("");
  }
  std::uint64_t number(const char* name, std::uint64_t max) {
    const auto found = message_.is_object() ? message_.find(name) : message_.end();
    const bool natural = found != message_.end() && found->is_number_integer() &&
                         (found->is_number_unsigned() || found->get<std::int64_t>() >= 0);
    if (!natural) {
      refuse(std::string("\"") + name + "\" is missing or not a number of 0 or more");
      return 0;
    }
    const auto number = found->get<std::uint64_t>();
    if (number > max) refuse(std::string("\"") + name + "\" is out of range");
    return number;
  }
  // An array of [hex, hex] pairs.
  std::vector<std::pair<std::string, std::string>> pairs(const char* name) {
    std::vector<std::pair<std::string, std::string>> out;
    const json* array = field(name, json::value_t::array);
    if (array == nullptr) return out;
    for (const json& pair : *array) {
      if (!pair.is_array() || pair.size() != 2) {
        refuse(std::string("\"") + name + "\" holds what is not a pair");
        return {};
      }
      out.emplace_back(bytes_of(pair[0], name), bytes_of(pair[1], name));
    }
    return out;
  }
  bool flag(const char* name) {
    const json* value = field(name, json::value_t::boolean);
    return value != nullptr && value->get<bool>();
  }
  std::optional<auth::Digest> digest(const json& value, const char* what) {
    const std::string bytes = bytes_of(value, what);
    auth::Digest digest{};
    if (bytes.size() != digest.size()) {
      refuse(std::string("\"") + what + "\" is not a SHA-256 digest");
      return std::nullopt;
    }
    std::copy(bytes.begin(), bytes.end(), digest.begin());
    return digest;
  }
  void refuse(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  const json& message_;
  std::string error_;
};

std::optional<config::AuthType> auth_type_named(std::string_view name) {
  using config::AuthType;
  for (const AuthType type : {AuthType::trust, AuthType::peer, AuthType::md5, AuthType::scram_sha_256,
                              AuthType::cert, AuthType::hba}) {
    if (auth_method_name(type) == name) return type;
  }
  return std::nullopt;
}

}  // namespace

json moved_client_to_json(const MovedClient& client) {
  std::vector<std::pair<std::string, std::string>> settings;
  settings.reserve(client.settings.size());
  for (const auto& setting : client.settings) settings.emplace_back(setting.name, setting.value);
  json custom_names = json::array();
  for (const auto& name : client.custom_setting_names) custom_names.push_back(to_hex(name));
  json out{{"old_id", client.old_id},
           {"transport", client.transport == daemon::Transport::tcp ? "tcp" : "unix"},
           {"user", to_hex(client.user)},
           {"database", to_hex(client.database)},
           {"startup_settings", pairs_to_json(client.startup_settings)},
           {"settings", pairs_to_json(settings)},
           {"custom_setting_names", std::move(custom_names)},
           {"statements", pairs_to_json(client.statements)},
           {"cancel_process_id", client.cancel_process_id},
           {"cancel_secret", client.cancel_secret},
           {"auth_method", client.auth_method ? std::string(auth_method_name(*client.auth_method)) : ""},
           {"pin_reason", to_hex(client.pin_reason)}};
  if (client.server) {
    out["server"] = {{"backend_pid", client.server->backend_pid},
                     {"cancel_secret", client.server->cancel_secret},
                     {"parameters", pairs_to_json(client.server->parameters)},
                     {"login_user", to_hex(client.server->login_user)},
                     {"statement_generation", client.server->statement_generation},
                     {"holds_backend_state", client.server->holds_backend_state},
                     {"carries_client_settings", client.server->carries_client_settings},
                     {"session_changed", client.server->session_changed},
                     {"functions_changed", client.server->functions_changed},
                     {"library_loaded", client.server->library_loaded}};
  }
  if (client.scram_keys) {
    out["scram_keys"] = {digest_hex(client.scram_keys->client_key),
                         digest_hex(client.scram_keys->server_key)};
  }
  return out;
}

Result<MovedClient> moved_client_from_json(const json& message) {
  FieldReader read(message);
  MovedClient client;
  constexpr auto kU32 = std::numeric_limits<std::uint32_t>::max();
  client.old_id = read.number("old_id", std::numeric_limits<std::uint64_t>::max());
  if (const json* transport = read.field("transport", json::value_t::string)) {
    if (*transport == "tcp") {
      client.transport = daemon::Transport::tcp;
    } else if (*transport != "unix") {
      read.refuse(R"("transport" is neither "unix" nor "tcp")");
    }
  }
  client.pin_reason = read.bytes("pin_reason");
  client.user = read.bytes("user");
  client.database = read.bytes("database");
  if (client.user.empty() || client.database.empty()) read.refuse("no user or database");
  client.startup_settings = read.pairs("startup_settings");
  for (auto& [name, value] : read.pairs("settings")) client.settings.push_back({name, value});
  if (const json* names = read.field("custom_setting_names", json::value_t::array)) {
    for (const json& name : *names)
      client.custom_setting_names.push_back(read.bytes_of(name, "custom_setting_names"));
  }
  client.statements = read.pairs("statements");
  for (const auto& [name, definition] : client.statements) {
    if (name.empty() || definition.empty()) read.refuse("a statement without a name or a definition");
  }
  client.cancel_process_id = static_cast<std::uint32_t>(read.number("cancel_process_id", kU32));
  client.cancel_secret = static_cast<std::uint32_t>(read.number("cancel_secret", kU32));
  if (client.cancel_process_id == 0) read.refuse("no cancel key");
  const json* method = read.field("auth_method", json::value_t::string);
  if (method != nullptr && !method->get_ref<const std::string&>().empty()) {
    client.auth_method = auth_type_named(method->get_ref<const std::string&>());
    if (!client.auth_method) read.refuse("\"auth_method\" names no method");
  }
  if (message.is_object() && message.contains("scram_keys")) {
    const json& keys = message["scram_keys"];
    if (!keys.is_array() || keys.size() != 2) {
      read.refuse("\"scram_keys\" is not a pair");
    } else {
      const auto client_key = read.digest(keys[0], "scram_keys");
      const auto server_key = read.digest(keys[1], "scram_keys");
      if (client_key && server_key) client.scram_keys = auth::ScramKeys{*client_key, *server_key};
    }
  }
  if (message.is_object() && message.contains("server")) {
    FieldReader server(message["server"]);
    pool::MovedServer moved;
    moved.backend_pid = static_cast<std::uint32_t>(server.number("backend_pid", kU32));
    moved.cancel_secret = static_cast<std::uint32_t>(server.number("cancel_secret", kU32));
    moved.parameters = server.pairs("parameters");
    moved.login_user = server.bytes("login_user");
    moved.statement_generation = static_cast<std::uint32_t>(server.number("statement_generation", kU32));
    moved.holds_backend_state = server.flag("holds_backend_state");
    moved.carries_client_settings = server.flag("carries_client_settings");
    moved.session_changed = server.flag("session_changed");
    moved.functions_changed = server.flag("functions_changed");
    moved.library_loaded = server.flag("library_loaded");
    if (moved.backend_pid == 0 || moved.login_user.empty()) server.refuse("no backend pid or login user");
    if (!server.error().empty()) read.refuse("server: " + server.error());
    client.server = std::move(moved);
  }
  if (!read.error().empty()) return fail("moved client refused: " + read.error());
  return client;
}

}  // namespace sluice::frontend
