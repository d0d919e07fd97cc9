// auth.file (PgBouncer's userlist.txt) and the secrets it may hold.
#include <gtest/gtest.h>

#include "auth/auth_file.h"
#include "auth/secret.h"

namespace sluice::auth {
namespace {

// RFC 7677's example (password 'pencil') in PostgreSQL's pg_authid.rolpassword form.
constexpr std::string_view kVerifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

TEST(AuthSecret, ScramVerifierRoundTripsAndMatchesItsPassword) {
  const auto verifier = parse_scram_verifier(kVerifier);
  ASSERT_TRUE(verifier);
  EXPECT_EQ(verifier->iterations, 4096);
  EXPECT_EQ(format_scram_verifier(*verifier), kVerifier);
  const ScramVerifier made = make_scram_verifier("pencil", verifier->salt, 4096);
  EXPECT_EQ(made.stored_key, verifier->stored_key);
  EXPECT_EQ(made.server_key, verifier->server_key);
}

TEST(AuthSecret, OnlyVerifiersAndMd5HashesAreSecrets) {
  EXPECT_TRUE(parse_secret("md5" + std::string(32, 'a')));
  EXPECT_FALSE(parse_secret("md5" + std::string(32, 'A')));
  EXPECT_FALSE(parse_secret("md5" + std::string(31, 'a')));
  EXPECT_FALSE(parse_secret("pencil"));
  EXPECT_FALSE(parse_secret(""));
  EXPECT_FALSE(parse_secret("SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA"));
  EXPECT_FALSE(parse_secret(
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="));
  EXPECT_FALSE(parse_secret("SCRAM-SHA-256$4096:$x:y"));
}

TEST(AuthFile, ParsesPgBouncerFormat) {
  const std::string text = "; a comment\n# another\n\n  \"alice\" \"" + std::string(kVerifier) +
                           "\"\n\"bo\"\"b\"   \"md5" + std::string(32, '0') + "\" trailing words ignored\r\n";
  const auto file = parse_auth_file(text);
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->secrets.size(), 2U);
  ASSERT_NE(file->find("alice"), nullptr);
  EXPECT_TRUE(std::holds_alternative<ScramVerifier>(*file->find("alice")));
  ASSERT_NE(file->find("bo\"b"), nullptr);
  EXPECT_TRUE(std::holds_alternative<Md5Hash>(*file->find("bo\"b")));
  EXPECT_EQ(file->find("carol"), nullptr);
}

TEST(AuthFile, ErrorsNameTheLine) {
  const auto expect_error = [](const std::string& text, int line, const std::string& words) {
    const auto file = parse_auth_file(text);
    ASSERT_FALSE(file) << text;
    EXPECT_EQ(file.error().line, line) << text;
    EXPECT_NE(file.error().message.find(words), std::string::npos) << file.error().message;
  };
  expect_error("\"alice\" \"pencil\"\n", 1, "plain-text passwords are not accepted");
  expect_error(
      "\n\"alice\" \"md5" + std::string(32, '0') + "\"\n\"alice\" \"md5" + std::string(32, '1') + "\"", 3,
      "appears twice");
  expect_error("alice md5\n", 1, "expected \"user\" \"secret\"");
  expect_error("\"alice\" \"md5", 1, "expected \"user\" \"secret\"");
  expect_error("\"\" \"md5" + std::string(32, '0') + "\"", 1, "empty");
}

}  // namespace
}  // namespace sluice::auth
