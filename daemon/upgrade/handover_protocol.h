// The live-upgrade handover protocol between the running sluiced and the one
// replacing it (README "Live upgrade"): length-prefixed JSON messages over a
// private socket pair, the listening sockets riding along as SCM_RIGHTS.
// Pure framing, no I/O, so it can be unit tested.
//
//   new → old  {"type":"hello","version":1,"pid":P}
//   old → new  {"type":"listeners","names":[...]}   + one descriptor per name
//   new → old  {"type":"ready","pid":P}  or  {"type":"failed","reason":"..."} (at any point)
//   old → new  {"type":"go"}               the old process stops accepting
//   then       old → new {"type":"progress",...}; new → old {"type":"cancel",...}
//              old → new {"type":"client","fds":1,"move":M,"client":{...}}  + the client's socket:
//              a client at rest, handed over with its state (frontend/moved_client.h)
//              new → old {"type":"moved","move":M,"adopted":true|false}  what became of it: until
//              then the old process keeps a copy of its socket, to drain the client should the new
//              process die first or decline it (daemon/upgrade/unconfirmed_moves.h)
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sluice::daemon::upgrade {

// Bumped whenever a message changes meaning: a new binary speaking another version is refused.
// 2: clients move ("client"), and "moved" in "progress" counts them.
// 3: the new process answers for each client ("moved").
inline constexpr int kProtocolVersion = 3;
// The largest message is a client's state with its prepared statements; anything larger is a broken
// or hostile peer (such a client is drained instead of moved).
inline constexpr std::size_t kMaxMessageBytes = std::size_t{16} * 1024 * 1024;
// The descriptors one message may carry (client, TCP, control and metrics listeners fit easily).
inline constexpr std::size_t kMaxDescriptors = 16;

// A 4-byte big-endian length, then the JSON text.
std::string encode_message(const nlohmann::json& message);

// Cuts a byte stream into messages.
class MessageReader {
 public:
  void append(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete message; nullopt until one is complete; an error for a
  // message too long, not JSON, or not an object with a string "type".
  Result<std::optional<nlohmann::json>> next();

 private:
  std::string buffer_;
};

// The "type" of a message the reader accepted.
inline std::string message_type(const nlohmann::json& message) {
  return message.at("type").get<std::string>();
}

}  // namespace sluice::daemon::upgrade
