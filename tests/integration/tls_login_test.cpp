// TLS for clients on the TCP listener (README "TLS"): libpq's sslmode=require and verify-full,
// tls.mode require / allow / disable with PostgreSQL's answers, the client's own verification
// failures, PostgreSQL 17's direct TLS with its ALPN rule, and what `sluicectl clients` shows.
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/tls_helpers.h"

namespace {

using namespace harness;

// PostgreSQL's refusal for a plain-text login that a hostssl-only pg_hba.conf turns away.
std::string no_encryption(const std::string& host) {
  return "no pg_hba.conf entry for host \"" + host + "\", user \"" + os_user() +
         "\", database \"postgres\", no encryption";
}

TEST(TlsLoginTest, RequireServesLibpqOverTlsAndRefusesPlainTextOverTcp) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 2, .overrides = tls_overrides(pki, "require", port)});

  const PgConn required = connect(tcp_conninfo(port, "sslmode=require"));
  EXPECT_EQ(PQsslInUse(required.get()), 1);
  EXPECT_STREQ(PQsslAttribute(required.get(), "protocol"), "TLSv1.3");
  EXPECT_EQ(scalar(required, "SELECT 40 + 2"), "42");

  const PgConn verified = connect(tcp_conninfo(
      port, "host=localhost hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=" + pki.ca_cert()));
  EXPECT_EQ(PQsslInUse(verified.get()), 1);
  EXPECT_EQ(server_serial(verified), "03E8");  // 1000
  EXPECT_EQ(scalar(verified, "SELECT 'verified'"), "verified");

  // Plain text over TCP: PostgreSQL's wording and SQLSTATE, as libpq shows them...
  const PgConn plain = try_connect(tcp_conninfo(port, "sslmode=disable"));
  EXPECT_NE(PQstatus(plain.get()), CONNECTION_OK);
  EXPECT_NE(std::string(PQerrorMessage(plain.get())).find(no_encryption("127.0.0.1")), std::string::npos)
      << PQerrorMessage(plain.get());
  // ... and on the wire.
  RawClient raw(port);
  raw.send(startup_packet());
  const auto refusal = raw.read_until('Z');
  ASSERT_TRUE(refusal);
  ASSERT_EQ(refusal->type, 'E');
  EXPECT_EQ(error_fields(*refusal)['S'], "FATAL");
  EXPECT_EQ(error_fields(*refusal)['C'], "28000");
  EXPECT_EQ(error_fields(*refusal)['M'], no_encryption("127.0.0.1"));
  EXPECT_TRUE(raw.closed_by_peer());

  // The Unix socket never does TLS, and tls.mode does not apply to it.
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 'unix'"), "unix");
}

TEST(TlsLoginTest, PsqlConnectsWithVerifyFull) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = tls_overrides(pki, "require", port)});
  const Captured psql = run_capture({"psql", "-X", "-At", "-c", "\\conninfo", "-c", "SELECT 'over tls'",
                                     "host=localhost hostaddr=127.0.0.1 port=" + std::to_string(port) +
                                         " dbname=postgres sslmode=verify-full sslrootcert=" + pki.ca_cert()},
                                    std::chrono::seconds(30));
  ASSERT_TRUE(psql.succeeded()) << psql.describe() << ": " << psql.err;
  EXPECT_NE(psql.out.find("SSL connection (protocol: TLSv1.3"), std::string::npos) << psql.out;
  EXPECT_NE(psql.out.find("over tls"), std::string::npos) << psql.out;
}

TEST(TlsLoginTest, AllowServesBothDisableAnswersN) {
  const TestPki pki;
  {
    const int port = free_tcp_port();
    // Plain-text TCP logins get trust only when it is written out (README "Authentication").
    nlohmann::json overrides = tls_overrides(pki, "allow", port);
    overrides["auth"] = {{"type", "trust"}};
    Sluiced sluiced({.pool_size = 1, .overrides = overrides});
    const PgConn plain = connect(tcp_conninfo(port, "sslmode=disable"));
    EXPECT_EQ(PQsslInUse(plain.get()), 0);
    EXPECT_EQ(scalar(plain, "SELECT 'plain'"), "plain");
    const PgConn encrypted = connect(tcp_conninfo(port, "sslmode=require"));
    EXPECT_EQ(PQsslInUse(encrypted.get()), 1);
    EXPECT_EQ(scalar(encrypted, "SELECT 'tls'"), "tls");
  }
  {
    const int port = free_tcp_port();
    // Plain-text TCP logins get trust only when it is written out (README "Authentication").
    nlohmann::json overrides = tls_overrides(pki, "disable", port);
    overrides["auth"] = {{"type", "trust"}};
    Sluiced sluiced({.pool_size = 1, .overrides = overrides});
    const PgConn refused = try_connect(tcp_conninfo(port, "sslmode=require"));
    EXPECT_NE(PQstatus(refused.get()), CONNECTION_OK);
    EXPECT_NE(std::string(PQerrorMessage(refused.get())).find("server does not support SSL"),
              std::string::npos)
        << PQerrorMessage(refused.get());
    const PgConn preferred = connect(tcp_conninfo(port, "sslmode=prefer"));
    EXPECT_EQ(PQsslInUse(preferred.get()), 0);
    EXPECT_EQ(scalar(preferred, "SELECT 'prefer'"), "prefer");
    // A direct ClientHello on a listener without TLS is not served.
    TlsClient direct(port, {.alpn = "postgresql"});
    EXPECT_FALSE(direct.handshake());
  }
}

TEST(TlsVerificationTest, ClientRefusesAnUnknownCaAndAWrongHostName) {
  const TestPki pki;
  pki.make_other_ca("other-ca");
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = tls_overrides(pki, "require", port)});

  const PgConn wrong_ca =
      try_connect(tcp_conninfo(port, "sslmode=verify-ca sslrootcert=" + pki.dir() + "/other-ca.crt"));
  EXPECT_NE(PQstatus(wrong_ca.get()), CONNECTION_OK);
  EXPECT_NE(std::string(PQerrorMessage(wrong_ca.get())).find("certificate verify failed"), std::string::npos)
      << PQerrorMessage(wrong_ca.get());

  // The certificate names localhost; verify-full to 127.0.0.1 must not accept it.
  const PgConn wrong_host =
      try_connect(tcp_conninfo(port, "sslmode=verify-full sslrootcert=" + pki.ca_cert()));
  EXPECT_NE(PQstatus(wrong_host.get()), CONNECTION_OK);
  EXPECT_NE(std::string(PQerrorMessage(wrong_host.get())).find("does not match host name \"127.0.0.1\""),
            std::string::npos)
      << PQerrorMessage(wrong_host.get());

  // sluiced is unharmed by either.
  const PgConn good = connect(tcp_conninfo(port, "sslmode=verify-ca sslrootcert=" + pki.ca_cert()));
  EXPECT_EQ(scalar(good, "SELECT 'still serving'"), "still serving");
}

TEST(TlsDirectTest, DirectTlsNeedsAlpnPostgresql) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = tls_overrides(pki, "require", port)});
  {
    TlsClient direct(port, {.alpn = "postgresql", .ca_file = pki.ca_cert()});
    ASSERT_TRUE(direct.handshake()) << direct.failure();
    EXPECT_EQ(direct.version(), "TLSv1.3");
    EXPECT_EQ(direct.login(), "I");
  }
  {
    // No ALPN: PostgreSQL 17 completes the handshake, then closes without a word.
    TlsClient direct(port, {.ca_file = pki.ca_cert()});
    ASSERT_TRUE(direct.handshake()) << direct.failure();
    direct.send(startup_packet());
    EXPECT_FALSE(direct.read_message(std::chrono::milliseconds(2000)));
    EXPECT_TRUE(direct.closed_by_peer());
  }
  {
    // Another protocol offered: the handshake fails with a no_application_protocol alert.
    TlsClient direct(port, {.alpn = "http/1.1"});
    EXPECT_FALSE(direct.handshake());
    EXPECT_NE(direct.failure().find("no application protocol"), std::string::npos) << direct.failure();
  }
  {
    // After an SSLRequest, ALPN is optional, as in PostgreSQL 17.
    TlsClient negotiated(port, {.ssl_request = true});
    ASSERT_TRUE(negotiated.handshake()) << negotiated.failure();
    EXPECT_EQ(negotiated.login(), "I");
  }
  EXPECT_NE(sluiced.log().find(
                "received direct SSL connection request without ALPN protocol negotiation extension"),
            std::string::npos);
}

TEST(TlsClientsViewTest, ClientsShowTransportTlsVersionAndAuthMethod) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 2, .overrides = tls_overrides(pki, "allow", port)});
  const PgConn over_tls = connect(tcp_conninfo(port, "sslmode=require application_name=tls"));
  const PgConn over_unix = connect(sluiced.conninfo());

  const auto answer = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
  ASSERT_TRUE(answer.contains("clients")) << answer.dump();
  int tls_rows = 0;
  int unix_rows = 0;
  for (const auto& client : answer["clients"]) {
    if (client["transport"] == "tcp") {
      ++tls_rows;
      EXPECT_EQ(client["tls"], "TLSv1.3") << client.dump();
    } else {
      ++unix_rows;
      EXPECT_EQ(client["transport"], "unix") << client.dump();
      EXPECT_TRUE(client["tls"].is_null()) << client.dump();
    }
    EXPECT_EQ(client["auth"], "trust") << client.dump();
  }
  EXPECT_EQ(tls_rows, 1);
  EXPECT_EQ(unix_rows, 1);

  const auto table = ctltest::run_process({SLUICECTL_PATH, "-s", sluiced.control_socket(), "clients"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("TRANSPORT"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("TLSv1.3"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("unix"), std::string::npos) << table.out;
}

}  // namespace
