// A client's state in a live upgrade (frontend/moved_client.h): what the old sluiced sends is what
// the new one adopts, byte for byte, and a message that is not exactly that is refused.
#include <gtest/gtest.h>

#include "daemon/upgrade/handover_protocol.h"
#include "frontend/moved_client.h"

namespace sluice::frontend {
namespace {

using nlohmann::json;

MovedClient full_client() {
  MovedClient client;
  client.old_id = 4242;
  client.transport = daemon::Transport::tcp;
  client.user = "app";
  client.database = std::string("d\xe9j\xe0", 4);  // Latin-1, not UTF-8
  client.startup_settings = {{"application_name", "bench"}, {"search_path", "app, public"}};
  client.settings = {{"work_mem", "8MB"}, {"app.tenant", std::string("\xff\x01", 2)}, {"role", "reader"}};
  client.custom_setting_names = {"app.tenant"};
  client.statements = {{"s1", std::string("SELECT $1\0\0\x01\0\0\0\x17", 16)},
                       {"P_2", std::string("SELECT 1\0\0\0", 11)}};
  client.cancel_process_id = 0x7ffffffe;
  client.cancel_secret = 0xffffffff;
  client.auth_method = config::AuthType::scram_sha_256;
  auth::ScramKeys keys;
  keys.client_key.fill(0xab);
  keys.server_key.fill(0x01);
  client.scram_keys = keys;
  client.server = pool::MovedServer{.backend_pid = 31337,
                                    .cancel_secret = 0x80000001,
                                    .parameters = {{"server_version", "15.8"}, {"TimeZone", "UTC"}},
                                    .login_user = "app",
                                    .statement_generation = 3,
                                    .holds_backend_state = true,
                                    .carries_client_settings = true,
                                    .session_changed = false,
                                    .functions_changed = true,
                                    .library_loaded = false};
  client.pin_reason = "temporary objects";
  return client;
}

// Through the handover framing, as the channel carries it.
json through_the_channel(const json& state) {
  daemon::upgrade::MessageReader reader;
  reader.append(daemon::upgrade::encode_message({{"type", "client"}, {"fds", 1}, {"client", state}}));
  auto message = reader.next();
  EXPECT_TRUE(message.ok() && message->has_value());
  return message.ok() && message->has_value() ? (**message)["client"] : json();
}

TEST(UpgradeMovedClient, EveryFieldSurvivesTheRoundTrip) {
  const MovedClient sent = full_client();
  const auto received = moved_client_from_json(through_the_channel(moved_client_to_json(sent)));
  ASSERT_TRUE(received.ok()) << received.error();
  EXPECT_EQ(*received, sent);
}

TEST(UpgradeMovedClient, AClientWithNothingOptionalSurvivesToo) {
  MovedClient sent;
  sent.user = "u";
  sent.database = "db";
  sent.cancel_process_id = 7;
  const auto received = moved_client_from_json(through_the_channel(moved_client_to_json(sent)));
  ASSERT_TRUE(received.ok()) << received.error();
  EXPECT_EQ(*received, sent);
  EXPECT_FALSE(received->scram_keys.has_value());
  EXPECT_FALSE(received->auth_method.has_value());
  EXPECT_FALSE(received->server.has_value());
}

std::string refusal(const json& state) {
  const auto received = moved_client_from_json(state);
  return received.ok() ? "" : received.error();
}

TEST(UpgradeMovedClient, AnyMissingOrMalformedFieldIsRefused) {
  const json good = moved_client_to_json(full_client());
  for (const auto& [key, value] : good.items()) {
    json missing = good;
    missing.erase(key);
    if (key == "scram_keys" || key == "server") {
      EXPECT_EQ(refusal(missing), "") << key << " is optional";
      continue;
    }
    EXPECT_NE(refusal(missing), "") << "without " << key;
    json wrong = good;
    wrong[key] = value.is_string() ? json(3) : json("x");
    EXPECT_NE(refusal(wrong), "") << key << " of the wrong type";
  }
  const auto with = [&good](const char* key, json value) {
    json changed = good;
    changed[key] = std::move(value);
    return changed;
  };
  EXPECT_EQ(refusal(with("user", "4g")), "moved client refused: \"user\" is not hex");
  EXPECT_EQ(refusal(with("user", "abc")), "moved client refused: \"user\" is not hex");
  EXPECT_EQ(refusal(with("user", "")), "moved client refused: no user or database");
  EXPECT_EQ(refusal(with("cancel_process_id", -1)),
            "moved client refused: \"cancel_process_id\" is missing or not a number of 0 or more");
  EXPECT_EQ(refusal(with("cancel_secret", std::uint64_t{1} << 32)),
            "moved client refused: \"cancel_secret\" is out of range");
  EXPECT_EQ(refusal(with("cancel_process_id", 0)), "moved client refused: no cancel key");
  EXPECT_EQ(refusal(with("transport", "udp")),
            "moved client refused: \"transport\" is neither \"unix\" nor \"tcp\"");
  EXPECT_EQ(refusal(with("auth_method", "password")),
            "moved client refused: \"auth_method\" names no method");
  EXPECT_EQ(refusal(with("statements", json::array({json::array({"6131"})}))),
            "moved client refused: \"statements\" holds what is not a pair");
  EXPECT_EQ(refusal(with("statements", json::array({json::array({"", "6131"})}))),
            "moved client refused: a statement without a name or a definition");
  EXPECT_EQ(refusal(with("settings", json::array({json::array({1, 2})}))),
            "moved client refused: \"settings\" is not hex");
  EXPECT_EQ(refusal(with("scram_keys", json::array({"ab", "cd"}))),
            "moved client refused: \"scram_keys\" is not a SHA-256 digest");
  EXPECT_EQ(refusal(with("scram_keys", "ab")), "moved client refused: \"scram_keys\" is not a pair");
  json server = good["server"];
  server.erase("backend_pid");
  EXPECT_EQ(refusal(with("server", server)),
            "moved client refused: server: \"backend_pid\" is missing or not a number of 0 or more");
  EXPECT_EQ(refusal(with("server", "x")),
            "moved client refused: server: \"backend_pid\" is missing or not a number of 0 or more");
  server = good["server"];
  server["library_loaded"] = 1;
  EXPECT_EQ(refusal(with("server", server)),
            "moved client refused: server: \"library_loaded\" is missing or of the wrong type");
  server = good["server"];
  server["login_user"] = "";
  EXPECT_EQ(refusal(with("server", server)), "moved client refused: server: no backend pid or login user");
  EXPECT_NE(refusal(json::array()), "");
  EXPECT_NE(refusal(json("client")), "");
}

// A message cut short never reaches moved_client_from_json: the framing waits for the rest, and
// a frame whose JSON is cut is refused.
TEST(UpgradeMovedClient, ATruncatedMessageIsRefusedCleanly) {
  const std::string frame = daemon::upgrade::encode_message(
      {{"type", "client"}, {"fds", 1}, {"client", moved_client_to_json(full_client())}});
  for (std::size_t cut = 0; cut < frame.size(); cut += 7) {
    daemon::upgrade::MessageReader reader;
    reader.append(std::string_view(frame).substr(0, cut));
    auto next = reader.next();
    ASSERT_TRUE(next.ok()) << "cut at " << cut;
    EXPECT_FALSE(next->has_value()) << "cut at " << cut;
  }
  std::string cut_json = frame.substr(4, frame.size() / 2);
  std::string reframed(4, '\0');
  for (int i = 0; i < 4; ++i)
    reframed[static_cast<std::size_t>(i)] = static_cast<char>((cut_json.size() >> (24 - 8 * i)) & 0xff);
  daemon::upgrade::MessageReader reader;
  reader.append(reframed + cut_json);
  const auto next = reader.next();
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error(), "handover message is not JSON");
}

}  // namespace
}  // namespace sluice::frontend
