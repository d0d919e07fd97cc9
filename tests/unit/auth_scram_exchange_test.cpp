// The server side of SCRAM-SHA-256, checked against RFC 7677's worked example and a client
// written here (the test's own HMACs), with and without channel binding.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "auth/crypto.h"
#include "auth/scram_exchange.h"
#include "auth/secret.h"
#include "protocol/sqlstate.h"
#include "protocol/wire.h"

namespace sluice::auth {
namespace {

using Verdict = AuthStep::Verdict;

// RFC 7677, section 3.
constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+"
    "Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

ScramVerifier rfc_verifier() { return make_scram_verifier("pencil", *base64_decode(kSalt), 4096); }

std::string u32(std::uint32_t v) {
  std::string out;
  protocol::append_u32(out, v);
  return out;
}

// SASLInitialResponse body.
std::string initial_response(std::string_view mechanism, std::string_view message) {
  return std::string(mechanism) + '\0' + u32(static_cast<std::uint32_t>(message.size())) +
         std::string(message);
}

protocol::Bytes bytes(const std::string& text) { return protocol::as_bytes(text); }

// The body of an 'R' message the exchange wrote: after type, length and code.
std::string auth_body(const std::string& message, std::uint32_t code) {
  EXPECT_GE(message.size(), 9U);
  EXPECT_EQ(message[0], 'R');
  EXPECT_EQ(protocol::read_u32(reinterpret_cast<const std::uint8_t*>(message.data()) + 1),
            message.size() - 1);
  EXPECT_EQ(protocol::read_u32(reinterpret_cast<const std::uint8_t*>(message.data()) + 5), code);
  return message.substr(9);
}

ScramExchange exchange(std::optional<ScramVerifier> verifier, ChannelBinding binding = std::nullopt) {
  return ScramExchange({.user = "user",
                        .verifier = std::move(verifier),
                        .why_no_verifier = "no such role",
                        .channel_binding = std::move(binding),
                        .server_nonce = std::string(kServerNonce)});
}

// A client that knows `password`: the final message for the server-first it got.
std::string client_final(std::string_view password, std::string_view gs2_header,
                         const std::string& binding_data, std::string_view client_first_bare,
                         const std::string& server_first) {
  // server-first: r=<nonce>,s=<salt>,i=<iterations>
  const std::size_t s = server_first.find(",s=");
  const std::size_t i = server_first.find(",i=");
  const std::string nonce = server_first.substr(2, s - 2);
  const auto salt = *base64_decode(server_first.substr(s + 3, i - s - 3));
  const int iterations = std::stoi(server_first.substr(i + 3));
  const Digest salted = pbkdf2_sha256(password, salt, iterations);
  const Digest client_key = hmac_sha256(salted, as_bytes("Client Key"));
  const std::string without_proof =
      "c=" + base64_encode(as_bytes(std::string(gs2_header) + binding_data)) + ",r=" + nonce;
  const std::string auth_message = std::string(client_first_bare) + "," + server_first + "," + without_proof;
  const Digest signature = hmac_sha256(sha256(client_key), as_bytes(auth_message));
  Digest proof{};
  for (std::size_t k = 0; k < proof.size(); ++k) proof[k] = client_key[k] ^ signature[k];
  return without_proof + ",p=" + base64_encode(proof);
}

TEST(AuthScramExchange, Rfc7677ExampleSucceedsWithTheServerSignature) {
  auto scram = exchange(rfc_verifier());
  EXPECT_EQ(auth_body(scram.start(), 10), std::string("SCRAM-SHA-256\0\0", 15));
  const AuthStep first =
      scram.on_response(bytes(initial_response("SCRAM-SHA-256", "n,,n=user,r=" + std::string(kClientNonce))));
  ASSERT_EQ(first.verdict, Verdict::more) << first.error.message;
  EXPECT_EQ(auth_body(first.reply, 11),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  const AuthStep final = scram.on_response(bytes(std::string(kClientFinal)));
  ASSERT_EQ(final.verdict, Verdict::ok) << final.error.log_reason;
  EXPECT_EQ(auth_body(final.reply, 12), kServerFinal);
  // ClientKey = HMAC(SaltedPassword, "Client Key"): what pass-through logs in with.
  const Digest salted = pbkdf2_sha256("pencil", *base64_decode(kSalt), 4096);
  ASSERT_TRUE(scram.client_key());
  EXPECT_EQ(*scram.client_key(), hmac_sha256(salted, as_bytes("Client Key")));
}

TEST(AuthScramExchange, WrongPasswordFailsWith28P01AndPostgresWording) {
  auto scram = exchange(rfc_verifier());
  const std::string bare = "n=,r=" + std::string(kClientNonce);
  const AuthStep first = scram.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare)));
  ASSERT_EQ(first.verdict, Verdict::more);
  const AuthStep final =
      scram.on_response(bytes(client_final("pen", "n,,", "", bare, auth_body(first.reply, 11))));
  EXPECT_EQ(final.verdict, Verdict::failed);
  EXPECT_STREQ(final.error.sqlstate, sqlstate::kInvalidPassword);
  EXPECT_EQ(final.error.message, "password authentication failed for user \"user\"");
  EXPECT_TRUE(final.reply.empty());
  EXPECT_FALSE(scram.client_key());
}

TEST(AuthScramExchange, UnknownRoleLooksTheSameUntilTheEndAndItsSaltIsStable) {
  const std::string bare = "n=,r=" + std::string(kClientNonce);
  auto first_try = exchange(std::nullopt);
  auto second_try = exchange(std::nullopt);
  EXPECT_EQ(first_try.start(), exchange(rfc_verifier()).start());
  const AuthStep a = first_try.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare)));
  const AuthStep b = second_try.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare)));
  ASSERT_EQ(a.verdict, Verdict::more);
  // The same fake salt every time for the same name: a changing one would give the role away.
  EXPECT_EQ(a.reply, b.reply);
  EXPECT_NE(auth_body(a.reply, 11).find(",i=4096"), std::string::npos);
  const AuthStep final =
      first_try.on_response(bytes(client_final("pencil", "n,,", "", bare, auth_body(a.reply, 11))));
  EXPECT_EQ(final.verdict, Verdict::failed);
  EXPECT_EQ(final.error.message, "password authentication failed for user \"user\"");
  EXPECT_EQ(final.error.log_reason, "no such role");
  EXPECT_NE(mock_scram_verifier("user").salt, mock_scram_verifier("other").salt);
}

TEST(AuthScramExchange, ClientFinalOfAnEarlierExchangeIsRefused) {
  // The first exchange succeeds; replaying its client-final against a new server nonce fails.
  auto first = ScramExchange({.user = "user",
                              .verifier = rfc_verifier(),
                              .why_no_verifier = {},
                              .channel_binding = std::nullopt,
                              .server_nonce = {}});  // random nonces, as in service
  const std::string bare = "n=,r=" + std::string(kClientNonce);
  const AuthStep server_first = first.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare)));
  const std::string final_message =
      client_final("pencil", "n,,", "", bare, auth_body(server_first.reply, 11));
  ASSERT_EQ(first.on_response(bytes(final_message)).verdict, Verdict::ok);

  auto second = ScramExchange({.user = "user",
                               .verifier = rfc_verifier(),
                               .why_no_verifier = {},
                               .channel_binding = std::nullopt,
                               .server_nonce = {}});
  ASSERT_EQ(second.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare))).verdict,
            Verdict::more);
  const AuthStep replayed = second.on_response(bytes(final_message));
  EXPECT_EQ(replayed.verdict, Verdict::failed);
  EXPECT_STREQ(replayed.error.sqlstate, sqlstate::kProtocolViolation);
  EXPECT_EQ(replayed.error.message, "invalid SCRAM response");  // PostgreSQL's words
  EXPECT_EQ(replayed.error.detail, "Nonce does not match.");
  // And the finished exchange takes nothing more.
  EXPECT_EQ(first.on_response(bytes(final_message)).verdict, Verdict::failed);
}

TEST(AuthScramExchange, PlusIsOfferedOnTlsAndTheBindingIsChecked) {
  const std::vector<std::uint8_t> binding = {0xde, 0xad, 0xbe, 0xef, 0x01};
  const std::string header = "p=tls-server-end-point,,";
  const std::string bare = "n=,r=" + std::string(kClientNonce);
  auto scram = exchange(rfc_verifier(), binding);
  EXPECT_EQ(auth_body(scram.start(), 10), std::string("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34));
  const AuthStep first = scram.on_response(bytes(initial_response("SCRAM-SHA-256-PLUS", header + bare)));
  ASSERT_EQ(first.verdict, Verdict::more) << first.error.message;
  const std::string data(binding.begin(), binding.end());
  const AuthStep final =
      scram.on_response(bytes(client_final("pencil", header, data, bare, auth_body(first.reply, 11))));
  EXPECT_EQ(final.verdict, Verdict::ok) << final.error.log_reason;

  // Another connection's binding data (a man in the middle's TLS session) fails.
  auto relayed = exchange(rfc_verifier(), binding);
  const AuthStep relayed_first =
      relayed.on_response(bytes(initial_response("SCRAM-SHA-256-PLUS", header + bare)));
  const AuthStep relayed_final = relayed.on_response(
      bytes(client_final("pencil", header, "other", bare, auth_body(relayed_first.reply, 11))));
  EXPECT_EQ(relayed_final.verdict, Verdict::failed);
  EXPECT_EQ(relayed_final.error.message, "SCRAM channel binding check failed");
  EXPECT_EQ(relayed_final.error.sqlstate, std::string("28000"));  // as PostgreSQL
}

TEST(AuthScramExchange, ChannelBindingNegotiationFollowsPostgres) {
  const std::string bare = "n=,r=" + std::string(kClientNonce);
  // Without TLS there is no PLUS to choose.
  auto plain = exchange(rfc_verifier());
  const AuthStep no_plus =
      plain.on_response(bytes(initial_response("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,," + bare)));
  EXPECT_EQ(no_plus.error.message, "client selected an invalid SASL authentication mechanism");
  // "y": the client could bind but thinks the server cannot; on TLS that is a downgrade.
  auto on_tls = exchange(rfc_verifier(), std::vector<std::uint8_t>{1, 2, 3});
  const AuthStep downgrade = on_tls.on_response(bytes(initial_response("SCRAM-SHA-256", "y,," + bare)));
  EXPECT_EQ(downgrade.error.message, "SCRAM channel binding negotiation error");
  // "y" without TLS is fine, and the c= attribute must repeat it.
  auto yes = exchange(rfc_verifier());
  const AuthStep yes_first = yes.on_response(bytes(initial_response("SCRAM-SHA-256", "y,," + bare)));
  ASSERT_EQ(yes_first.verdict, Verdict::more);
  EXPECT_EQ(
      yes.on_response(bytes(client_final("pencil", "y,,", "", bare, auth_body(yes_first.reply, 11)))).verdict,
      Verdict::ok);
  // A c= attribute that does not repeat the header of a non-PLUS exchange.
  auto other_header = exchange(rfc_verifier());
  const AuthStep other_first =
      other_header.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare)));
  const AuthStep other_final = other_header.on_response(
      bytes(client_final("pencil", "y,,", "", bare, auth_body(other_first.reply, 11))));
  EXPECT_EQ(other_final.error.message, "unexpected SCRAM channel-binding attribute in client-final-message");
  EXPECT_STREQ(other_final.error.sqlstate, sqlstate::kProtocolViolation);
  // Binding data with plain SCRAM-SHA-256.
  auto mixed = exchange(rfc_verifier(), std::vector<std::uint8_t>{1});
  EXPECT_EQ(mixed.on_response(bytes(initial_response("SCRAM-SHA-256", "p=tls-server-end-point,," + bare)))
                .error.message,
            "malformed SCRAM message");
}

TEST(AuthScramExchange, MalformedMessagesAreProtocolViolations) {
  const std::vector<std::string> bad_first = {
      "", "x,,n=,r=abc", "n,n=,r=abc", "n,,r=abc", "n,,n=", "n,,n=,r=", "n,,n=,r=a b",
  };
  for (const auto& message : bad_first) {
    auto scram = exchange(rfc_verifier());
    const AuthStep step = scram.on_response(bytes(initial_response("SCRAM-SHA-256", message)));
    EXPECT_EQ(step.verdict, Verdict::failed) << message;
    EXPECT_STREQ(step.error.sqlstate, sqlstate::kProtocolViolation) << message;
  }
  auto authzid = exchange(rfc_verifier());
  EXPECT_STREQ(
      authzid.on_response(bytes(initial_response("SCRAM-SHA-256", "n,a=bob,n=,r=abc"))).error.sqlstate,
      sqlstate::kFeatureNotSupported);
  auto extension = exchange(rfc_verifier());
  EXPECT_EQ(
      extension.on_response(bytes(initial_response("SCRAM-SHA-256", "n,,m=ext,n=,r=abc"))).error.message,
      "client requires an unsupported SCRAM extension");
  // A length that does not match the data.
  auto length = exchange(rfc_verifier());
  EXPECT_EQ(length.on_response(bytes(std::string("SCRAM-SHA-256\0", 14) + u32(100) + "n,,n=,r=abc")).verdict,
            Verdict::failed);

  const std::string bare = "n=,r=" + std::string(kClientNonce);
  const std::string nonce = std::string(kClientNonce) + std::string(kServerNonce);
  for (const std::string& final_message :
       {std::string("r=") + nonce + ",p=AAAA", "c=biws,r=" + nonce, "c=biws,r=" + nonce + ",p=AAAA",
        "c=biws,r=" + nonce + ",p=" + base64_encode(Digest{}) + ",x=1", "c=bi!s,r=" + nonce + ",p=AAAA"}) {
    auto scram = exchange(rfc_verifier());
    ASSERT_EQ(scram.on_response(bytes(initial_response("SCRAM-SHA-256", "n,," + bare))).verdict,
              Verdict::more);
    const AuthStep step = scram.on_response(bytes(final_message));
    EXPECT_EQ(step.verdict, Verdict::failed) << final_message;
    EXPECT_STREQ(step.error.sqlstate, sqlstate::kProtocolViolation) << final_message;
  }
}

}  // namespace
}  // namespace sluice::auth
