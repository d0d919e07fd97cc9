// The client side of SCRAM-SHA-256 with a ClientKey instead of a password (SCRAM pass-through):
// RFC 7677's worked example, and a whole exchange against sluiced's own server side.
#include <gtest/gtest.h>

#include <string>

#include "auth/crypto.h"
#include "auth/scram_client.h"
#include "auth/scram_exchange.h"
#include "auth/secret.h"
#include "protocol/wire.h"

namespace sluice::auth {
namespace {

// RFC 7677, section 3.
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+"
    "Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
constexpr std::string_view kSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";

// What a client derives from its password (RFC 5802): the keys pass-through is handed.
ScramKeys keys_from_password(std::string_view password, std::string_view salt_base64, int iterations) {
  const Digest salted = pbkdf2_sha256(password, *base64_decode(salt_base64), iterations);
  return ScramKeys{.client_key = hmac_sha256(salted, as_bytes("Client Key")),
                   .server_key = hmac_sha256(salted, as_bytes("Server Key"))};
}

protocol::Bytes bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// A 'p' message's body, its type and length checked.
std::string p_body(const std::string& message) {
  EXPECT_GE(message.size(), 5U);
  EXPECT_EQ(message[0], 'p');
  EXPECT_EQ(protocol::read_u32(reinterpret_cast<const std::uint8_t*>(message.data()) + 1),
            message.size() - 1);
  return message.substr(5);
}

// An 'R' message's body after its code, the code checked.
std::string r_body(const std::string& message, std::uint32_t code) {
  EXPECT_GE(message.size(), 9U);
  EXPECT_EQ(message[0], 'R');
  EXPECT_EQ(protocol::read_u32(reinterpret_cast<const std::uint8_t*>(message.data()) + 5), code);
  return message.substr(9);
}

// What PostgreSQL offers over plain text; over TLS it offers SCRAM-SHA-256-PLUS first.
const std::string kMechanisms = std::string("SCRAM-SHA-256") + '\0' + '\0';
const std::string kMechanismsOverTls = std::string("SCRAM-SHA-256-PLUS") + '\0' + kMechanisms;

TEST(AuthScramClient, ReproducesRfc7677WithTheClientKeyAlone) {
  ScramClient client(keys_from_password("pencil", kSalt, 4096), std::string(kClientNonce), "user");
  const auto initial = client.on_mechanisms(bytes(kMechanisms));
  ASSERT_TRUE(initial) << initial.error();
  const std::string client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
  EXPECT_EQ(p_body(*initial), std::string("SCRAM-SHA-256") + '\0' + std::string("\0\0\0", 3) +
                                  static_cast<char>(client_first.size()) + client_first);
  const auto final_message = client.on_server_first(bytes(kServerFirst));
  ASSERT_TRUE(final_message) << final_message.error();
  EXPECT_EQ(p_body(*final_message), kClientFinal);
  EXPECT_EQ(client.on_server_final(bytes(kServerFinal)), std::nullopt);
}

TEST(AuthScramClient, RefusesAWrongServerSignature) {
  ScramClient client(keys_from_password("pencil", kSalt, 4096), std::string(kClientNonce), "user");
  ASSERT_TRUE(client.on_mechanisms(bytes(kMechanisms)));
  ASSERT_TRUE(client.on_server_first(bytes(kServerFirst)));
  EXPECT_EQ(client.on_server_final(bytes("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")),
            "invalid server signature");
}

TEST(AuthScramClient, PassesTheServerErrorOn) {
  ScramClient client(keys_from_password("pencil", kSalt, 4096), std::string(kClientNonce));
  ASSERT_TRUE(client.on_mechanisms(bytes(kMechanisms)));
  ASSERT_TRUE(client.on_server_first(bytes(kServerFirst)));
  EXPECT_EQ(client.on_server_final(bytes("e=invalid-proof")),
            "the server refused the SCRAM proof: invalid-proof");
}

TEST(AuthScramClient, RefusesMalformedServerFirstMessages) {
  const ScramKeys keys = keys_from_password("pencil", kSalt, 4096);
  for (const std::string_view server_first :
       {"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",        // not our nonce
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",  // no server part
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=not base64,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=12x",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ""}) {
    ScramClient client(keys, std::string(kClientNonce));
    ASSERT_TRUE(client.on_mechanisms(bytes(kMechanisms)));
    EXPECT_FALSE(client.on_server_first(bytes(server_first))) << server_first;
    EXPECT_TRUE(client.on_server_final(bytes(kServerFinal)).has_value())
        << "an exchange that failed stays over";
  }
}

TEST(AuthScramClient, NeedsPlainScramOffered) {
  ScramClient client(keys_from_password("pencil", kSalt, 4096));
  const auto initial = client.on_mechanisms(bytes(std::string("SCRAM-SHA-256-X") + '\0' + '\0'));
  ASSERT_FALSE(initial);
  EXPECT_EQ(initial.error(), "the server does not offer SCRAM-SHA-256");
  ScramClient unterminated(keys_from_password("pencil", kSalt, 4096));
  EXPECT_FALSE(unterminated.on_mechanisms(bytes("SCRAM-SHA-256")));
}

TEST(AuthScramClient, MessagesOutOfOrderAreRefused) {
  ScramClient client(keys_from_password("pencil", kSalt, 4096), std::string(kClientNonce));
  EXPECT_FALSE(client.on_server_first(bytes(kServerFirst)));
  EXPECT_TRUE(client.on_server_final(bytes(kServerFinal)).has_value());
}

// A whole exchange of `client` with `server`: nullopt when both agree, else the first complaint.
std::optional<std::string> run(ScramClient& client, ScramExchange& server) {
  const auto initial = client.on_mechanisms(bytes(r_body(server.start(), 10)));
  if (!initial) return initial.error();
  const AuthStep first = server.on_response(protocol::as_bytes(p_body(*initial)));
  if (first.verdict != AuthStep::Verdict::more) return first.error.message;
  const auto final_message = client.on_server_first(bytes(r_body(first.reply, 11)));
  if (!final_message) return final_message.error();
  const AuthStep last = server.on_response(protocol::as_bytes(p_body(*final_message)));
  if (last.verdict != AuthStep::Verdict::ok) return last.error.message;
  return client.on_server_final(bytes(r_body(last.reply, 12)));
}

// A client proves its password to sluiced's server side; the keys sluiced keeps then log in to a
// server holding the same verifier (what PostgreSQL does with pg_authid's), with a fresh nonce.
TEST(AuthScramClient, KeysFromOneLoginProveTheRoleInTheNext) {
  const auto salt = *base64_decode("c2FsdHNhbHRzYWx0c2FsdA==");
  const ScramVerifier verifier = make_scram_verifier("s3cret", salt, 4096);
  ScramExchange by_client({.user = "app",
                           .verifier = verifier,
                           .why_no_verifier = {},
                           .channel_binding = {},
                           .server_nonce = {}});
  ScramClient with_password(keys_from_password("s3cret", "c2FsdHNhbHRzYWx0c2FsdA==", 4096));
  ASSERT_EQ(run(with_password, by_client), std::nullopt);
  const auto kept = by_client.scram_keys();
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->server_key, verifier.server_key);

  ScramExchange postgres({.user = "app",
                          .verifier = verifier,
                          .why_no_verifier = {},
                          .channel_binding = {},
                          .server_nonce = {}});
  ScramClient passthrough(*kept);
  EXPECT_EQ(run(passthrough, postgres), std::nullopt);

  // The verifier changed on the server (another password): the kept key no longer proves the role.
  ScramExchange changed({.user = "app",
                         .verifier = make_scram_verifier("other", salt, 4096),
                         .why_no_verifier = {},
                         .channel_binding = {},
                         .server_nonce = {}});
  ScramClient stale(*kept);
  EXPECT_EQ(run(stale, changed), "password authentication failed for user \"app\"");
}

// Over TLS (libpq 15's channel_binding=prefer): SCRAM-SHA-256-PLUS with the server certificate's
// hash, which the server checks against its own.
class AuthScramClientOverTls : public ::testing::Test {
 protected:
  const std::vector<std::uint8_t> end_point_ = std::vector<std::uint8_t>(32, 0xab);
  const ScramVerifier verifier_ =
      make_scram_verifier("s3cret", *base64_decode("c2FsdHNhbHRzYWx0c2FsdA=="), 4096);
  const ScramKeys keys_ = keys_from_password("s3cret", "c2FsdHNhbHRzYWx0c2FsdA==", 4096);

  ScramExchange server(ChannelBinding binding) const {
    return ScramExchange({.user = "app",
                          .verifier = verifier_,
                          .why_no_verifier = {},
                          .channel_binding = std::move(binding),
                          .server_nonce = {}});
  }
  ScramClient client(ClientChannelBinding::Policy policy, std::vector<std::uint8_t> end_point) const {
    return ScramClient(keys_, "clientnonce", {},
                       {.policy = policy, .tls = true, .end_point = std::move(end_point)});
  }
};

TEST_F(AuthScramClientOverTls, APlusExchangeBindsTheLoginToTheServersCertificate) {
  ScramExchange postgres = server(end_point_);
  ScramClient bound = client(ClientChannelBinding::Policy::prefer, end_point_);
  const auto initial = bound.on_mechanisms(bytes(r_body(postgres.start(), 10)));
  ASSERT_TRUE(initial) << initial.error();
  EXPECT_TRUE(p_body(*initial).starts_with(std::string("SCRAM-SHA-256-PLUS") + '\0'));
  EXPECT_NE(p_body(*initial).find("p=tls-server-end-point,,n=,r=clientnonce"), std::string::npos);
  const AuthStep first = postgres.on_response(protocol::as_bytes(p_body(*initial)));
  ASSERT_EQ(first.verdict, AuthStep::Verdict::more) << first.error.message;
  const auto final_message = bound.on_server_first(bytes(r_body(first.reply, 11)));
  ASSERT_TRUE(final_message) << final_message.error();
  std::string header = "p=tls-server-end-point,,";
  header.append(end_point_.begin(), end_point_.end());
  EXPECT_TRUE(p_body(*final_message).starts_with("c=" + base64_encode(as_bytes(header)) + ",r=clientnonce"));
  const AuthStep last = postgres.on_response(protocol::as_bytes(p_body(*final_message)));
  ASSERT_EQ(last.verdict, AuthStep::Verdict::ok) << last.error.message;
  EXPECT_EQ(bound.on_server_final(bytes(r_body(last.reply, 12))), std::nullopt);
  EXPECT_TRUE(bound.channel_bound());
  EXPECT_TRUE(postgres.channel_bound());
}

// A certificate other than the server's own (a man in the middle holding another one): the server
// refuses the proof.
TEST_F(AuthScramClientOverTls, AnotherCertificatesHashFailsTheLogin) {
  ScramExchange postgres = server(end_point_);
  ScramClient relayed = client(ClientChannelBinding::Policy::prefer, std::vector<std::uint8_t>(32, 0xcd));
  EXPECT_NE(run(relayed, postgres), std::nullopt);
}

TEST_F(AuthScramClientOverTls, WithoutPlusOfferedPreferSaysItCouldBindAndRequireRefuses) {
  // kMechanisms: as a server that cannot bind offers SCRAM.
  ScramClient preferring = client(ClientChannelBinding::Policy::prefer, end_point_);
  const auto initial = preferring.on_mechanisms(bytes(kMechanisms));
  ASSERT_TRUE(initial) << initial.error();
  EXPECT_NE(p_body(*initial).find("y,,n=,r=clientnonce"), std::string::npos);

  ScramClient requiring = client(ClientChannelBinding::Policy::require, end_point_);
  const auto refused = requiring.on_mechanisms(bytes(kMechanisms));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(),
            "channel binding is required, but server did not offer an authentication method that "
            "supports channel binding");

  ScramClient disabled = client(ClientChannelBinding::Policy::disable, end_point_);
  ScramExchange plus = server(end_point_);
  EXPECT_EQ(run(disabled, plus), std::nullopt);
  EXPECT_FALSE(disabled.channel_bound());
}

TEST(AuthScramClient, PlusOfferedInPlainTextOrRequiredWithoutTlsIsRefused) {
  ScramClient plain(keys_from_password("pencil", kSalt, 4096));
  const auto stripped = plain.on_mechanisms(bytes(kMechanismsOverTls));
  ASSERT_FALSE(stripped);
  EXPECT_EQ(stripped.error(), "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection");
  ScramClient requiring(keys_from_password("pencil", kSalt, 4096), {}, {},
                        {.policy = ClientChannelBinding::Policy::require, .tls = false, .end_point = {}});
  const auto no_tls = requiring.on_mechanisms(bytes(kMechanisms));
  ASSERT_FALSE(no_tls);
  EXPECT_EQ(no_tls.error(), "channel binding required, but SSL not in use");
}

}  // namespace
}  // namespace sluice::auth
