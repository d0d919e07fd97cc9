// sluiced's own login for SCRAM pass-through, bytes in and out: the StartupMessage, a whole login
// against sluiced's server-side SCRAM, PostgreSQL's refusal worded as libpq's verbose text, and
// servers that ask for what pass-through cannot give.
#include <gtest/gtest.h>

#include <string>

#include "auth/auth_step.h"
#include "auth/crypto.h"
#include "auth/scram_exchange.h"
#include "auth/secret.h"
#include "pool/server_login.h"
#include "protocol/error_fields.h"
#include "protocol/wire.h"

namespace sluice::pool {
namespace {

using Status = ServerLogin::Status;

const auto kSalt = *auth::base64_decode("c2FsdHNhbHRzYWx0c2FsdA==");

auth::ScramKeys keys_for(std::string_view password) {
  const auth::Digest salted = auth::pbkdf2_sha256(password, kSalt, 4096);
  return {.client_key = auth::hmac_sha256(salted, auth::as_bytes("Client Key")),
          .server_key = auth::hmac_sha256(salted, auth::as_bytes("Server Key"))};
}

std::string message(char type, const std::string& body) {
  std::string out(1, type);
  protocol::append_u32(out, static_cast<std::uint32_t>(4 + body.size()));
  return out + body;
}

std::string auth_ok() {
  std::string out;
  auth::append_authentication_request(out, 0, "");
  return out;
}

std::string parameter(const std::string& name, const std::string& value) {
  return message('S', name + '\0' + value + '\0');
}

std::string after_login() {
  std::string key;
  protocol::append_u32(key, 4242);
  protocol::append_u32(key, 0xdeadbeef);
  return auth_ok() + parameter("server_version", "15.8") + parameter("TimeZone", "UTC") +
         message('N', std::string("SWARNING") + '\0' + '\0') + message('K', key) + message('Z', "I");
}

// Feeds `bytes` one byte at a time: a login must not care how the server's replies are split.
Status feed(ServerLogin& login, const std::string& bytes, std::string& out) {
  Status status = Status::more;
  for (const char c : bytes)
    status = login.on_bytes(protocol::Bytes(reinterpret_cast<const std::uint8_t*>(&c), 1), out);
  return status;
}

// The body of a 'p' message sluiced sent.
protocol::Bytes p_body(const std::string& sent) {
  EXPECT_FALSE(sent.empty());
  EXPECT_EQ(sent[0], 'p');
  return protocol::as_bytes(sent).subspan(5);
}

TEST(PoolServerLogin, StartupMessageCarriesTheParametersInOrder) {
  ServerLogin login({{"user", "app"}, {"database", "shop"}, {"options", "-c search_path=x"}}, keys_for("pw"));
  const std::string packet = login.startup_message();
  const std::string body = std::string("\x00\x03\x00\x00", 4) + "user" + '\0' + "app" + '\0' + "database" +
                           '\0' + "shop" + '\0' + "options" + '\0' + "-c search_path=x" + '\0' + '\0';
  std::string expected;
  protocol::append_u32(expected, static_cast<std::uint32_t>(4 + body.size()));
  EXPECT_EQ(packet, expected + body);
}

TEST(PoolServerLogin, LogsInWithScramAgainstTheVerifier) {
  auth::ScramExchange server({.user = "app",
                              .verifier = auth::make_scram_verifier("pw", kSalt, 4096),
                              .why_no_verifier = {},
                              .channel_binding = {},
                              .server_nonce = {}});
  ServerLogin login({{"user", "app"}, {"database", "shop"}}, keys_for("pw"));
  std::string sent;
  ASSERT_EQ(feed(login, server.start(), sent), Status::more);
  const auth::AuthStep first = server.on_response(p_body(sent));
  ASSERT_EQ(first.verdict, auth::AuthStep::Verdict::more) << first.error.message;
  sent.clear();
  ASSERT_EQ(feed(login, first.reply, sent), Status::more);
  const auth::AuthStep last = server.on_response(p_body(sent));
  ASSERT_EQ(last.verdict, auth::AuthStep::Verdict::ok) << last.error.message;
  sent.clear();
  ASSERT_EQ(feed(login, last.reply + after_login(), sent), Status::done) << login.failure();
  EXPECT_TRUE(sent.empty());
  EXPECT_TRUE(login.scram_done());
  EXPECT_EQ(login.process_id(), 4242U);
  EXPECT_EQ(login.secret(), 0xdeadbeefU);
  EXPECT_EQ(login.parameters(), (StartupParameters{{"server_version", "15.8"}, {"TimeZone", "UTC"}}));
}

TEST(PoolServerLogin, TrustNeedsNoExchange) {
  ServerLogin login({{"user", "app"}}, keys_for("pw"));
  std::string sent;
  EXPECT_EQ(feed(login, after_login(), sent), Status::done);
  EXPECT_FALSE(login.scram_done());
}

// channel_binding=require (libpq 15's check_expected_areq): only a SCRAM-SHA-256-PLUS exchange over
// TLS may end the login; a trusting server or another method is refused, a bound login goes on.
TEST(PoolServerLogin, ChannelBindingRequiredAcceptsOnlyABoundExchange) {
  ServerLogin trusted({{"user", "app"}}, keys_for("pw"), {}, ServerLogin::ChannelBinding::require);
  trusted.use_tls(std::vector<std::uint8_t>(32, 7));
  std::string sent;
  ASSERT_EQ(feed(trusted, after_login(), sent), Status::failed);
  EXPECT_EQ(trusted.failure(),
            std::string(ServerLogin::kRefusedPrefix) +
                "channel binding required, but server authenticated client without channel binding");

  ServerLogin asked_md5({{"user", "app"}}, keys_for("pw"), {}, ServerLogin::ChannelBinding::require);
  std::string request;
  auth::append_authentication_request(request, 5, "salt");
  ASSERT_EQ(feed(asked_md5, request, sent), Status::failed);
  EXPECT_EQ(asked_md5.failure(),
            std::string(ServerLogin::kRefusedPrefix) +
                "channel binding required but not supported by server's authentication request");

  const std::vector<std::uint8_t> end_point(32, 7);
  auth::ScramExchange server({.user = "app",
                              .verifier = auth::make_scram_verifier("pw", kSalt, 4096),
                              .why_no_verifier = {},
                              .channel_binding = end_point,
                              .server_nonce = {}});
  ServerLogin bound({{"user", "app"}}, keys_for("pw"), {}, ServerLogin::ChannelBinding::require);
  bound.use_tls(end_point);
  sent.clear();
  ASSERT_EQ(feed(bound, server.start(), sent), Status::more) << bound.failure();
  const auth::AuthStep first = server.on_response(p_body(sent));
  ASSERT_EQ(first.verdict, auth::AuthStep::Verdict::more) << first.error.message;
  sent.clear();
  ASSERT_EQ(feed(bound, first.reply, sent), Status::more) << bound.failure();
  const auth::AuthStep last = server.on_response(p_body(sent));
  ASSERT_EQ(last.verdict, auth::AuthStep::Verdict::ok) << last.error.message;
  EXPECT_TRUE(server.channel_bound());
  sent.clear();
  EXPECT_EQ(feed(bound, last.reply + after_login(), sent), Status::done) << bound.failure();
}

TEST(PoolServerLogin, ServerErrorIsWordedAsLibpqVerboseText) {
  ServerLogin login({{"user", "app"}}, keys_for("pw"));
  std::string sent;
  const std::string error =
      message('E', std::string("SFATAL") + '\0' + "VFATAL" + '\0' + "C28P01" + '\0' +
                       "Mpassword authentication failed for user \"app\"" + '\0' + '\0');
  ASSERT_EQ(feed(login, error, sent), Status::failed);
  const auto fields = protocol::find_verbose_error(login.failure());
  ASSERT_TRUE(fields.has_value()) << login.failure();
  EXPECT_EQ(fields->sqlstate, "28P01");
  EXPECT_EQ(fields->message, "password authentication failed for user \"app\"");
}

TEST(PoolServerLogin, RefusesWhatPassThroughCannotAnswer) {
  for (const std::uint32_t code : {3U, 5U, 7U}) {
    ServerLogin login({{"user", "app"}}, keys_for("pw"));
    std::string request;
    auth::append_authentication_request(request, code, code == 5 ? "salt" : "");
    std::string sent;
    ASSERT_EQ(feed(login, request, sent), Status::failed) << code;
    EXPECT_TRUE(login.failure().starts_with(ServerLogin::kRefusedPrefix)) << login.failure();
    EXPECT_TRUE(sent.empty());
  }
}

TEST(PoolServerLogin, RefusesAServerThatSkipsOrBreaksTheProtocol) {
  const std::string bad_length = std::string("R\x00\x00\x00\x02", 5);
  const std::string before_auth = parameter("TimeZone", "UTC");
  const std::string no_key = auth_ok() + message('Z', "I");
  const std::string trailing = after_login() + message('N', std::string("SNOTICE") + '\0' + '\0');
  for (const std::string& stream : {bad_length, before_auth, no_key, trailing}) {
    ServerLogin login({{"user", "app"}}, keys_for("pw"));
    std::string sent;
    EXPECT_EQ(login.on_bytes(protocol::as_bytes(stream), sent), Status::failed);
    EXPECT_FALSE(login.failure().empty());
  }
}

}  // namespace
}  // namespace sluice::pool
