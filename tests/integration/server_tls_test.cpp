// TLS to the servers (README "TLS", server connections): a database whose conninfo asks libpq for
// TLS (sslmode=require, verify-full) is served over it — every byte of every scope, the release's
// reset, cancels — exactly as a direct connection with the same conninfo is; a server that fails
// verification is refused with libpq's reason. A PostgreSQL of this suite's own takes only TLS on
// TCP 127.0.0.1 (hostssl), so nothing here can pass in plain text.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/tls_helpers.h"

namespace {

using namespace harness;

class ServerTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki();
    server_ = new PostgresServer(free_tcp_port(), PostgresTls{pki_->server_cert(), pki_->server_key()});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete pki_;
  }

  // libpq's TCP conninfo for this suite's server; `tls` says how (sslmode and its files).
  static std::string tcp(const std::string& tls) {
    return "host=localhost hostaddr=127.0.0.1 port=" + std::to_string(server_->port()) + " dbname=postgres " +
           tls;
  }
  static std::string verify_full() { return "sslmode=verify-full sslrootcert=" + pki_->ca_cert(); }

  static Sluiced pooler(const std::string& conninfo, const std::string& mode, int pool_size) {
    return Sluiced({.pool_size = pool_size,
                    .pool_mode = mode,
                    .overrides = {{"databases", {{"postgres", {{"conninfo", conninfo}}}}}}});
  }

  static TestPki* pki_;
  static PostgresServer* server_;
};

TestPki* ServerTlsTest::pki_ = nullptr;
PostgresServer* ServerTlsTest::server_ = nullptr;

TEST_F(ServerTlsTest, ATransactionModePoolServesEveryScopeOverVerifiedTls) {
  const PgConn direct = connect(tcp(verify_full()));
  Sluiced sluiced = pooler(tcp(verify_full()), "transaction", 1);
  const PgConn first = connect(sluiced.conninfo());
  const PgConn second = connect(sluiced.conninfo());
  expect_served_over_tls(first, direct);
  take_turns_on_one_server(first, second, 20);
  EXPECT_EQ(scalar(second,
                   "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                   "WHERE a.application_name = 'client 1' AND s.ssl"),
            "1");
}

// No sslmode: libpq's default, prefer, takes TLS when the server offers it — as every TCP server
// with ssl = on does (Debian's PostgreSQL, with its snakeoil certificate, by default).
TEST_F(ServerTlsTest, ASessionModeClientOfADefaultConninfoGetsWhatADirectConnectionGets) {
  const PgConn direct = connect(tcp(""));
  Sluiced sluiced = pooler(tcp(""), "session", 2);
  const PgConn client = connect(sluiced.conninfo());
  expect_served_over_tls(client, direct);
  exec_ok(client, "CREATE TEMP TABLE t AS SELECT g FROM generate_series(1, 50000) g");
  EXPECT_EQ(scalar(client, "SELECT sum(g) FROM t"), "1250025000");
}

TEST_F(ServerTlsTest, ACancelStopsAQueryOnATlsServer) {
  Sluiced sluiced = pooler(tcp(verify_full()), "transaction", 1);
  const PgConn client = connect(sluiced.conninfo());
  ASSERT_EQ(scalar(client, "SELECT 1"), "1");
  ASSERT_EQ(PQsendQuery(client.get(), "SELECT pg_sleep(30)"), 1);
  const PgConn watcher = connect(server_->conninfo());
  ASSERT_TRUE(wait_until([&] {
    return scalar(watcher, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'") ==
           "1";
  }));
  const std::unique_ptr<PGcancel, decltype(&PQfreeCancel)> cancel(PQgetCancel(client.get()), &PQfreeCancel);
  std::array<char, 256> error{};
  ASSERT_EQ(PQcancel(cancel.get(), error.data(), static_cast<int>(error.size())), 1) << error.data();
  const PgResult result(PQgetResult(client.get()));
  EXPECT_STREQ(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE), "57014");
  while (PGresult* rest = PQgetResult(client.get())) PQclear(rest);
  EXPECT_EQ(scalar(client, "SELECT 'after'"), "after");
}

TEST_F(ServerTlsTest, AServerThatFailsVerificationIsRefusedWithLibpqsReason) {
  pki_->make_other_ca("other");
  Sluiced sluiced =
      pooler(tcp("sslmode=verify-full sslrootcert=" + pki_->dir() + "/other.crt"), "transaction", 1);
  const PgConn client = try_connect(sluiced.conninfo());
  std::string error = PQerrorMessage(client.get());
  if (PQstatus(client.get()) == CONNECTION_OK) {
    const PgResult result = exec(client, "SELECT 1");
    error = PQresultErrorMessage(result.get());
  }
  // At once, in the words a direct connection gets (libpq's), behind PostgreSQL's 08006 wording.
  EXPECT_NE(error.find("could not connect to server: "), std::string::npos) << error;
  EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;
}

}  // namespace
