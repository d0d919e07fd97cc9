// auth.type "cert": the client's certificate, verified against tls.ca_file, names the role in its
// CN. Refusals in PostgreSQL's words and SQLSTATE (28000).
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/tls_helpers.h"

namespace {

using namespace harness;

std::string with_certificate(const TestPki& pki, const std::string& name) {
  return "sslmode=require sslcert=" + pki.dir() + "/" + name + ".crt sslkey=" + pki.dir() + "/" + name +
         ".key";
}

std::string refusal_of(const PgConn& conn) {
  EXPECT_NE(PQstatus(conn.get()), CONNECTION_OK);
  return PQerrorMessage(conn.get());
}

TEST(TlsCertAuthTest, TheCertificatesCommonNameIsTheRole) {
  const TestPki pki;
  pki.issue("own", os_user(), 2001, /*server=*/false);
  pki.issue("someone-else", "someone_else", 2002, /*server=*/false);
  const TestPki stranger_pki("Stranger CA");  // a CA sluiced does not trust
  stranger_pki.issue("stranger", os_user(), 3001, /*server=*/false);
  const int port = free_tcp_port();
  nlohmann::json overrides = tls_overrides(pki, "allow", port);
  overrides["auth"] = {{"type", "cert"}};
  Sluiced sluiced({.pool_size = 1, .overrides = overrides});

  const PgConn own = connect(tcp_conninfo(port, with_certificate(pki, "own")));
  EXPECT_EQ(scalar(own, "SELECT current_user"), os_user());
  const auto clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
  ASSERT_EQ(clients["clients"].size(), 1U) << clients.dump();
  EXPECT_EQ(clients["clients"][0]["auth"], "cert");

  EXPECT_NE(refusal_of(try_connect(tcp_conninfo(port, "sslmode=require")))
                .find("FATAL:  connection requires a valid client certificate"),
            std::string::npos);
  EXPECT_NE(refusal_of(try_connect(tcp_conninfo(port, with_certificate(pki, "someone-else"))))
                .find("FATAL:  certificate authentication failed for user \"" + os_user() + "\""),
            std::string::npos);
  // A certificate no trusted CA issued fails the handshake itself.
  EXPECT_NE(
      refusal_of(try_connect(tcp_conninfo(port, "sslcert=" + stranger_pki.dir() + "/stranger.crt sslkey=" +
                                                    stranger_pki.dir() + "/stranger.key sslmode=require")))
          .find("unknown ca"),
      std::string::npos);
  // Without TLS there is no certificate: plain TCP and the Unix socket are turned away as a
  // hostssl-only pg_hba.conf would.
  EXPECT_NE(refusal_of(try_connect(tcp_conninfo(port, "sslmode=disable"))).find("no encryption"),
            std::string::npos);
  RawClient unix_client(sluiced.socket_path());
  unix_client.send(startup_packet());
  const auto refusal = unix_client.read_until('Z');
  ASSERT_TRUE(refusal);
  ASSERT_EQ(refusal->type, 'E');
  EXPECT_EQ(error_fields(*refusal)['C'], "28000");
  EXPECT_EQ(error_fields(*refusal)['M'], "no pg_hba.conf entry for host \"[local]\", user \"" + os_user() +
                                             "\", database \"postgres\", no encryption");

  // The refusals cost nothing: the certificate's owner still gets in.
  EXPECT_EQ(scalar(connect(tcp_conninfo(port, with_certificate(pki, "own"))), "SELECT 'again'"), "again");
}

TEST(TlsCertAuthTest, CertWithoutCaFileIsAConfigError) {
  const TestPki pki;
  nlohmann::json overrides = tls_overrides(pki, "require", free_tcp_port());
  overrides["tls"].erase("ca_file");
  overrides["auth"] = {{"type", "cert"}};
  Sluiced sluiced({.overrides = overrides}, Sluiced::Wait::none);
  const auto status = sluiced.wait_exit(std::chrono::seconds(10));
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1);
  EXPECT_NE(sluiced.log().find("key 'auth.type': \"cert\" needs tls.mode"), std::string::npos)
      << sluiced.log();
}

}  // namespace
