// A SCRAM exchange replayed on a new connection — an eavesdropper's copy of a client's
// client-first and client-final messages, byte for byte — fails through sluiced exactly as on
// PostgreSQL: the new connection's server nonce makes the copied final message's nonce wrong.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <array>
#include <map>
#include <string>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace {

using harness::Message;
using harness::RawClient;

constexpr const char* kRole = "auth_replay";
constexpr const char* kPassword = "replay secret";

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(length));
  return out;
}

std::string unbase64(const std::string& text) {
  std::string out(3 * text.size() / 4 + 1, '\0');
  const int length =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  out.resize(static_cast<std::size_t>(length) - std::count(text.begin(), text.end(), '='));
  return out;
}

std::string hmac(const std::string& key, const std::string& data) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> out{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &length);
  return {reinterpret_cast<const char*>(out.data()), length};
}

// "a=...,b=..." attribute `name` of a SCRAM message.
std::string attribute(const std::string& message, char name) {
  const std::string key = std::string(1, name) + "=";
  const std::size_t start = message.starts_with(key) ? 0 : message.find("," + key) + 1;
  const std::size_t value = start + 2;
  return message.substr(value, message.find(',', value) - value);
}

// The client-final-message for `password` (RFC 5802), as libpq computes it.
std::string client_final(const std::string& client_first_bare, const std::string& server_first) {
  const std::string salt = unbase64(attribute(server_first, 's'));
  const int iterations = std::stoi(attribute(server_first, 'i'));
  std::array<unsigned char, SHA256_DIGEST_LENGTH> salted{};
  PKCS5_PBKDF2_HMAC(kPassword, static_cast<int>(std::string(kPassword).size()),
                    reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                    iterations, EVP_sha256(), static_cast<int>(salted.size()), salted.data());
  const std::string client_key =
      hmac({reinterpret_cast<const char*>(salted.data()), salted.size()}, "Client Key");
  std::array<unsigned char, SHA256_DIGEST_LENGTH> stored{};
  SHA256(reinterpret_cast<const unsigned char*>(client_key.data()), client_key.size(), stored.data());
  const std::string without_proof = "c=biws,r=" + attribute(server_first, 'r');
  const std::string signature = hmac({reinterpret_cast<const char*>(stored.data()), stored.size()},
                                     client_first_bare + "," + server_first + "," + without_proof);
  std::string proof = client_key;
  for (std::size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(proof[i] ^ signature[i]);
  return without_proof + ",p=" + base64(proof);
}

std::string sasl_initial_response(const std::string& client_first) {
  return "p" + harness::be32(static_cast<std::uint32_t>(4 + 14 + 4 + client_first.size())) +
         std::string("SCRAM-SHA-256\0", 14) + harness::be32(static_cast<std::uint32_t>(client_first.size())) +
         client_first;
}

std::string sasl_response(const std::string& body) {
  return "p" + harness::be32(static_cast<std::uint32_t>(4 + body.size())) + body;
}

// Starts a SCRAM login as kRole on the socket at `path`, sends `client_first` and returns the
// server-first-message.
std::string server_first(RawClient& client, const std::string& client_first) {
  client.send(harness::startup_packet({{"user", kRole}, {"database", "postgres"}}));
  const auto mechanisms = client.read_message();
  EXPECT_TRUE(mechanisms && mechanisms->type == 'R' && mechanisms->payload.starts_with(harness::be32(10)));
  client.send(sasl_initial_response(client_first));
  const auto reply = client.read_message();
  EXPECT_TRUE(reply && reply->type == 'R' && reply->payload.starts_with(harness::be32(11)));
  return reply ? reply->payload.substr(4) : "";
}

// What the login at `path` answers to a replay of a successful exchange there.
std::map<char, std::string> replay_at(const std::string& path) {
  const std::string bare = "n=,r=0123456789abcdefghijklmn";
  std::string recorded_final;
  {
    RawClient honest(path);
    recorded_final = client_final(bare, server_first(honest, "n,," + bare));
    honest.send(sasl_response(recorded_final));
    const auto ready = honest.read_until('Z');
    EXPECT_TRUE(ready && ready->type == 'Z') << "the honest login failed at " << path;
  }
  RawClient replaying(path);
  const std::string other_first = server_first(replaying, "n,," + bare);
  EXPECT_NE(attribute(other_first, 'r'), attribute(recorded_final, 'r'));  // a fresh server nonce
  replaying.send(sasl_response(recorded_final));
  const auto error = replaying.read_message();
  EXPECT_TRUE(error && error->type == 'E');
  EXPECT_TRUE(replaying.closed_by_peer());
  return error ? harness::error_fields(*error) : std::map<char, std::string>{};
}

TEST(AuthReplay, AReplayedScramExchangeFailsAsOnPostgres) {
  authtest::set_role(kRole, kPassword, "scram-sha-256");
  authtest::prepend_hba_line(std::string("local all ") + kRole + " scram-sha-256");
  const std::string direct = harness::postgres().conninfo("postgres", kRole);
  ASSERT_TRUE(harness::wait_until(
      [&] { return authtest::contains(authtest::refusal(direct), "no password supplied"); }));
  auto config =
      harness::default_config({.overrides = {{"auth", {{"type", "scram-sha-256"}, {"file", "users.txt"}}}}});
  authtest::write_file(config.dir.path() + "/users.txt", authtest::auth_file_line(kRole));
  harness::Sluiced daemon(std::move(config));

  const std::string postgres_socket =
      harness::postgres().socket_dir() + "/.s.PGSQL." + std::to_string(harness::postgres().port());
  auto on_postgres = replay_at(postgres_socket);
  auto through_sluiced = replay_at(daemon.socket_path());
  EXPECT_EQ(on_postgres['C'], "08P01");
  for (const char field : {'S', 'V', 'C', 'M', 'D'})
    EXPECT_EQ(through_sluiced[field], on_postgres[field]) << "field " << field;
}

}  // namespace
