// Authentication over client TLS: SCRAM-SHA-256-PLUS binds the exchange to the TLS connection
// (and is not offered without TLS), hba's hostssl/hostnossl tell the two apart, hba's cert method
// reads the client certificate, and trust over TCP is given to TLS clients without being written.
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/tls_helpers.h"

namespace {

using authtest::contains;
using authtest::refusal;
using authtest::write_file;
using harness::PgConn;
using harness::tcp_conninfo;
using harness::TestPki;
using json = nlohmann::json;

constexpr const char* kPassword = "tls scram secret";

// The role auth_tls with a SCRAM password; its auth.file line.
std::string users_file() {
  static const std::string made = [] {
    authtest::set_role("auth_tls", kPassword, "scram-sha-256");
    return authtest::auth_file_line("auth_tls");
  }();
  return made;
}

// sluiced with tls.mode "allow" on 127.0.0.1:`port`, `auth` (with auth.file) and, if given, hba.conf.
harness::SluicedConfig tls_auth_config(const TestPki& pki, int port, json auth, const std::string& hba = "") {
  json overrides = harness::tls_overrides(pki, "allow", port);
  overrides["log_level"] = "debug";  // the log names the SCRAM mechanism of each login
  if (!auth.is_null()) {
    auth["file"] = "users.txt";
    overrides["auth"] = std::move(auth);
  }
  auto config = harness::default_config({.overrides = overrides});
  write_file(config.dir.path() + "/users.txt", users_file());
  if (!hba.empty()) write_file(config.dir.path() + "/hba.conf", hba);
  return config;
}

std::string as_auth_tls(const std::string& options) {
  return options + " user=auth_tls password='" + kPassword + "'";
}

json only_client(const harness::Sluiced& daemon) {
  const auto answer = ctltest::control(daemon.control_socket(), {{"cmd", "clients"}});
  EXPECT_EQ(answer["clients"].size(), 1U) << answer.dump();
  return answer["clients"].empty() ? json::object() : answer["clients"][0];
}

TEST(AuthTls, ChannelBindingRequireLogsInWithScramPlusOverTls) {
  const TestPki pki;
  const int port = harness::free_tcp_port();
  harness::Sluiced daemon(tls_auth_config(pki, port, {{"type", "scram-sha-256"}}));
  {
    const PgConn conn =
        harness::connect(tcp_conninfo(port, as_auth_tls("sslmode=require channel_binding=require")));
    EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "auth_tls");
    const json client = only_client(daemon);
    EXPECT_EQ(client["auth"], "scram-sha-256") << client.dump();
    EXPECT_FALSE(client["tls"].is_null()) << client.dump();
  }
  EXPECT_TRUE(contains(daemon.log(), "\"auth_tls\" authenticated with SCRAM-SHA-256-PLUS (scram-sha-256)"))
      << daemon.log();
  // libpq's default (channel_binding=prefer) takes PLUS too when it is offered.
  const PgConn preferred = harness::connect(tcp_conninfo(port, as_auth_tls("sslmode=require")));
  EXPECT_EQ(harness::scalar(preferred, "SELECT 1"), "1");
  EXPECT_FALSE(contains(daemon.log(), "\"auth_tls\" authenticated with SCRAM-SHA-256 (scram-sha-256)"))
      << daemon.log();
}

// An Ed25519 certificate's signature has no single hash, so tls-server-end-point has no data: PLUS is
// not offered, and libpq (channel_binding=prefer, its default) logs in with plain SCRAM.
TEST(AuthTls, WithAnEd25519CertificatePlusIsNotOfferedAndScramStillWorks) {
  const TestPki pki;
  const harness::TempDir dir("sluice-ed25519");
  const std::string cert = dir.path() + "/ed25519.crt";
  const std::string key = dir.path() + "/ed25519.key";
  ASSERT_EQ(std::system(("openssl req -x509 -newkey ed25519 -nodes -subj /CN=localhost -days 2 -keyout " +
                         key + " -out " + cert + " >/dev/null 2>&1")
                            .c_str()),
            0);
  const int port = harness::free_tcp_port();
  auto config = tls_auth_config(pki, port, {{"type", "scram-sha-256"}});
  json text = json::parse(config.text);
  text["tls"]["cert_file"] = cert;
  text["tls"]["key_file"] = key;
  config.text = text.dump();
  harness::Sluiced daemon(std::move(config));
  const PgConn client = harness::connect(tcp_conninfo(port, as_auth_tls("sslmode=require")));
  EXPECT_EQ(harness::scalar(client, "SELECT current_user"), "auth_tls");
  EXPECT_EQ(only_client(daemon).value("auth", ""), "scram-sha-256");
  EXPECT_TRUE(contains(daemon.log(), "authenticated with SCRAM-SHA-256 (scram-sha-256)")) << daemon.log();
}

TEST(AuthTls, PlusIsOfferedOnlyOverTlsAndLibpqInsistingOnItIsRefusedInPlainText) {
  const TestPki pki;
  const int port = harness::free_tcp_port();
  harness::Sluiced daemon(tls_auth_config(pki, port, {{"type", "scram-sha-256"}}));
  const std::string startup = harness::startup_packet({{"user", "auth_tls"}, {"database", "postgres"}});
  // AuthenticationSASL (10) and its mechanisms: PLUS first over TLS, as PostgreSQL lists them.
  harness::RawClient plain(port);
  plain.send(startup);
  const auto plain_offer = plain.read_message();
  ASSERT_TRUE(plain_offer.has_value());
  EXPECT_EQ(plain_offer->payload, harness::be32(10) + std::string("SCRAM-SHA-256\0\0", 15));
  harness::TlsClient encrypted(port, {.ssl_request = true});
  ASSERT_TRUE(encrypted.handshake()) << encrypted.failure();
  ASSERT_TRUE(encrypted.send(startup));
  const auto tls_offer = encrypted.read_message();
  ASSERT_TRUE(tls_offer.has_value());
  EXPECT_EQ(tls_offer->payload, harness::be32(10) + std::string("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34));

  // libpq itself gives up on a server without PLUS, as against PostgreSQL without TLS.
  const std::string refused =
      refusal(tcp_conninfo(port, as_auth_tls("sslmode=disable channel_binding=require")));
  EXPECT_TRUE(contains(refused, "channel binding required, but SSL not in use")) << refused;
  // The same login without the demand goes in, with plain SCRAM.
  EXPECT_EQ(refusal(tcp_conninfo(port, as_auth_tls("sslmode=disable"))), "");
  EXPECT_TRUE(contains(daemon.log(), "\"auth_tls\" authenticated with SCRAM-SHA-256 (scram-sha-256)"))
      << daemon.log();
}

TEST(AuthTls, HostsslMatchesOnlyTlsClientsAndHostnosslOnlyPlainOnes) {
  const TestPki pki;
  const int port = harness::free_tcp_port();
  harness::Sluiced daemon(tls_auth_config(pki, port, {{"type", "hba"}, {"hba_file", "hba.conf"}},
                                          "hostnossl all auth_tls 127.0.0.1/32 reject\n"
                                          "hostssl   all auth_tls 127.0.0.1/32 scram-sha-256\n"
                                          "hostssl   all all      127.0.0.1/32 trust\n"));
  // hostnossl passes a TLS client by; hostssl takes it.
  EXPECT_EQ(refusal(tcp_conninfo(port, as_auth_tls("sslmode=require"))), "");
  const std::string plain = refusal(tcp_conninfo(port, as_auth_tls("sslmode=disable")));
  EXPECT_TRUE(contains(plain,
                       "FATAL:  pg_hba.conf rejects connection for host \"127.0.0.1\", user \"auth_tls\", "
                       "database \"postgres\", no encryption"))
      << plain;
  // hostssl passes a plain client by: no line is left for it.
  const std::string other = refusal(tcp_conninfo(port, "sslmode=disable user=" + harness::os_user()));
  EXPECT_TRUE(contains(other, "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"" +
                                  harness::os_user() + "\", database \"postgres\", no encryption"))
      << other;
  EXPECT_EQ(refusal(tcp_conninfo(port, "sslmode=require user=" + harness::os_user())), "");
}

TEST(AuthTls, NoEntryOverTlsSaysSslEncryption) {
  const TestPki pki;
  const int port = harness::free_tcp_port();
  harness::Sluiced daemon(tls_auth_config(pki, port, {{"type", "hba"}, {"hba_file", "hba.conf"}},
                                          "hostnossl all all 127.0.0.1/32 trust\n"));
  const std::string refused = refusal(tcp_conninfo(port, as_auth_tls("sslmode=require")));
  EXPECT_TRUE(contains(refused,
                       "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"auth_tls\", "
                       "database \"postgres\", SSL encryption"))
      << refused;
}

TEST(AuthTls, HbaCertTakesTheRoleFromTheCertificatesCommonName) {
  const TestPki pki;
  pki.issue("own", "auth_tls", 2101, /*server=*/false);
  pki.issue("other", "someone_else", 2102, /*server=*/false);
  const int port = harness::free_tcp_port();
  harness::Sluiced daemon(tls_auth_config(pki, port, {{"type", "hba"}, {"hba_file", "hba.conf"}},
                                          "hostssl all all 127.0.0.1/32 cert\n"));
  const auto with = [&](const std::string& name) {
    return tcp_conninfo(port, "sslmode=require user=auth_tls sslcert=" + pki.dir() + "/" + name +
                                  ".crt sslkey=" + pki.dir() + "/" + name + ".key");
  };
  {
    const PgConn conn = harness::connect(with("own"));
    EXPECT_EQ(harness::scalar(conn, "SELECT current_user"), "auth_tls");
    EXPECT_EQ(only_client(daemon)["auth"], "cert");
  }
  const std::string wrong_cn = refusal(with("other"));
  EXPECT_TRUE(contains(wrong_cn, "FATAL:  certificate authentication failed for user \"auth_tls\""))
      << wrong_cn;
  const std::string none = refusal(tcp_conninfo(port, "sslmode=require user=auth_tls"));
  EXPECT_TRUE(contains(none, "FATAL:  connection requires a valid client certificate")) << none;
}

TEST(AuthTls, DefaultTrustOverTcpNeedsTls) {
  const TestPki pki;
  const int port = harness::free_tcp_port();
  harness::Sluiced daemon(tls_auth_config(pki, port, json()));  // no auth section: trust, not written
  EXPECT_EQ(refusal(tcp_conninfo(port, "sslmode=require user=" + harness::os_user())), "");
  const std::string plain = refusal(tcp_conninfo(port, "sslmode=disable user=" + harness::os_user()));
  EXPECT_TRUE(contains(plain, "no pg_hba.conf entry for host \"127.0.0.1\"")) << plain;
  EXPECT_TRUE(contains(plain, "no encryption")) << plain;
}

}  // namespace
