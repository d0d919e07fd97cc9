// SCRAM pass-through over TLS (README "SCRAM pass-through"): sluiced makes the TLS handshake
// itself, as libpq 15 would for the same conninfo (sslmode, sslrootcert, verify-full's host name,
// channel_binding), then logs in with the client's ClientKey over it and carries the pooled
// traffic through that session. A PostgreSQL of this suite's own takes only TLS on TCP 127.0.0.1
// and demands SCRAM of the roles in group ptt_scram there (hostssl ... scram-sha-256), so a login
// in plain text or without the client's key cannot pass.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include "tests/integration/auth_helpers.h"
#include "tests/integration/harness.h"
#include "tests/integration/tls_helpers.h"
#include "tests/integration/upgrade_helpers.h"

namespace {

using namespace harness;
using authtest::contains;
using authtest::write_file;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kRole = "ptt_user";
constexpr const char* kPassword = "tls pw";

class PassthroughTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new TestPki();
    server_ = new PostgresServer(free_tcp_port(), PostgresTls{pki_->server_cert(), pki_->server_key()});
    const PgConn admin = connect(server_->conninfo());
    exec_ok(admin, "CREATE ROLE ptt_scram NOLOGIN");
    exec_ok(admin, "SET password_encryption = 'scram-sha-256'");
    exec_ok(admin,
            std::string("CREATE ROLE ") + kRole + " LOGIN PASSWORD '" + kPassword + "' IN ROLE ptt_scram");
    secret_line_ =
        "\"" + std::string(kRole) + "\" \"" +
        scalar(admin, std::string("SELECT rolpassword FROM pg_authid WHERE rolname = '") + kRole + "'") +
        "\"\n";
    write_file(server_->socket_dir() + "/data/pg_hba.conf",
               "local all all trust\n"
               "hostssl all +ptt_scram 127.0.0.1/32 scram-sha-256\n"
               "hostssl all all 127.0.0.1/32 trust\n");
    exec_ok(admin, "SELECT pg_reload_conf()");
    const std::string direct = tcp("sslmode=require user=" + std::string(kRole));
    if (!wait_until([&] { return contains(authtest::refusal(direct), "no password supplied"); }))
      throw std::runtime_error("PostgreSQL does not demand SCRAM of " + std::string(kRole) + " on TCP");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete pki_;
  }

  // The suite's server on TCP; `tls`: sslmode and its files (no password: pass-through logs in).
  static std::string tcp(const std::string& tls, const std::string& host = "localhost") {
    return "host=" + host + " hostaddr=127.0.0.1 port=" + std::to_string(server_->port()) +
           " dbname=postgres " + tls;
  }
  static std::string verify_full() { return "sslmode=verify-full sslrootcert=" + pki_->ca_cert(); }

  // sluiced with SCRAM for its clients (auth.file holds the role's verifier), the database at
  // `conninfo`.
  static SluicedConfig config(const std::string& conninfo, int pool_size = 1,
                              const std::string& pool_mode = "transaction") {
    auto made = default_config({.pool_size = pool_size,
                                .pool_mode = pool_mode,
                                .overrides = {{"auth", {{"type", "scram-sha-256"}, {"file", "users.txt"}}},
                                              {"databases", {{"postgres", {{"conninfo", conninfo}}}}}}});
    write_file(made.dir.path() + "/users.txt", secret_line_);
    return made;
  }
  static std::string as_role(const Sluiced& sluiced) {
    return sluiced.conninfo("postgres", kRole) + " password='" + kPassword + "'";
  }
  // What a client of `sluiced` is told: at login, or at its first query.
  static std::string first_error(const Sluiced& sluiced) {
    const PgConn client = try_connect(as_role(sluiced));
    if (PQstatus(client.get()) != CONNECTION_OK) return PQerrorMessage(client.get());
    const PgResult result = exec(client, "SELECT 1");
    return PQresultErrorMessage(result.get());
  }

  static TestPki* pki_;
  static PostgresServer* server_;
  static std::string secret_line_;
};

TestPki* PassthroughTlsTest::pki_ = nullptr;
PostgresServer* PassthroughTlsTest::server_ = nullptr;
std::string PassthroughTlsTest::secret_line_;

std::string backend_ssl(const PgConn& conn) {
  return scalar(conn, "SELECT ssl::text || ' ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
}

TEST_F(PassthroughTlsTest, RequireIsServedByPassThroughOverTls) {
  const PgConn direct = connect(tcp("sslmode=require"));
  Sluiced sluiced(config(tcp("sslmode=require")));
  const PgConn first = connect(as_role(sluiced));
  const PgConn second = connect(as_role(sluiced));
  EXPECT_EQ(scalar(first, "SELECT current_user"), kRole);
  EXPECT_TRUE(backend_ssl(first).starts_with("true TLSv1.")) << backend_ssl(first);
  expect_served_over_tls(first, direct);  // many TLS records each way through sluiced's own session
  take_turns_on_one_server(first, second, 10);
  const PgConn admin = connect(server_->conninfo());
  EXPECT_EQ(
      scalar(admin, std::string("SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                                "WHERE a.usename = '") +
                        kRole + "' AND s.ssl"),
      "1");
}

// verify-full with channel_binding=require: the login succeeds only when SCRAM-SHA-256-PLUS bound it
// to the TLS session (sluiced refuses any other, as libpq does). A cancel reaches the server too: it
// goes in plain text on a new connection, as libpq sends it, and pg_hba does not apply to it.
TEST_F(PassthroughTlsTest, VerifyFullWithChannelBindingRequiredAndACancel) {
  Sluiced sluiced(config(tcp(verify_full() + " channel_binding=require")));
  const PgConn client = connect(as_role(sluiced));
  EXPECT_EQ(scalar(client, "SELECT current_user"), kRole);
  EXPECT_TRUE(backend_ssl(client).starts_with("true ")) << backend_ssl(client);
  ASSERT_EQ(PQsendQuery(client.get(), "SELECT pg_sleep(30)"), 1);
  const PgConn admin = connect(server_->conninfo());
  ASSERT_TRUE(wait_until([&] {
    return scalar(admin, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'") == "1";
  }));
  const auto started = Clock::now();
  const std::unique_ptr<PGcancel, decltype(&PQfreeCancel)> cancel(PQgetCancel(client.get()), &PQfreeCancel);
  std::array<char, 256> error{};
  ASSERT_EQ(PQcancel(cancel.get(), error.data(), static_cast<int>(error.size())), 1) << error.data();
  const PgResult result(PQgetResult(client.get()));
  EXPECT_STREQ(PQresultErrorField(result.get(), PG_DIAG_SQLSTATE), "57014");
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  while (PGresult* rest = PQgetResult(client.get())) PQclear(rest);
  EXPECT_EQ(scalar(client, "SELECT 'after'"), "after");
}

// libpq's default sslmode (prefer) against a server offering TLS: TLS, and the exchange bound.
TEST_F(PassthroughTlsTest, PreferUsesTheServersTls) {
  Sluiced sluiced(config(tcp("")));
  const PgConn client = connect(as_role(sluiced));
  EXPECT_TRUE(backend_ssl(client).starts_with("true ")) << backend_ssl(client);
}

// A certificate that does not name the host (an IP address here, the certificate names localhost),
// or is signed by another CA: every waiting client is told at once, in libpq's words.
TEST_F(PassthroughTlsTest, ACertificateThatFailsVerifyFullIsRefusedAtOnceInLibpqsWords) {
  const std::string mismatched = tcp(verify_full(), "127.0.0.1");
  const PgConn direct = try_connect(mismatched + " user=" + kRole);
  const std::string libpq = PQerrorMessage(direct.get());
  ASSERT_TRUE(contains(libpq, "does not match host name \"127.0.0.1\"")) << libpq;
  Sluiced sluiced(config(mismatched));
  auto started = Clock::now();
  std::string error = first_error(sluiced);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5)) << "the refusal waited for a timeout";
  // PostgreSQL's 08006 wording around libpq's reason ("server certificate for ... does not match ...").
  const std::string reason = libpq.substr(libpq.find("server certificate for"));
  EXPECT_TRUE(contains(error, "could not connect to server: " + reason.substr(0, reason.find('\n'))))
      << error << " / " << libpq;

  pki_->make_other_ca("other");
  Sluiced other(config(tcp("sslmode=verify-full sslrootcert=" + pki_->dir() + "/other.crt")));
  started = Clock::now();
  error = first_error(other);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  EXPECT_TRUE(contains(error, "could not connect to server: SSL error: certificate verify failed")) << error;

  Sluiced missing(config(tcp("sslmode=verify-ca sslrootcert=" + pki_->dir() + "/none.crt")));
  error = first_error(missing);
  EXPECT_TRUE(contains(error, "root certificate file \"" + pki_->dir() + "/none.crt\" does not exist"))
      << error;
  EXPECT_TRUE(contains(missing.log(),
                       "database postgres: SCRAM pass-through cannot make TLS to its server: root "
                       "certificate file \"" +
                           pki_->dir() + "/none.crt\" does not exist Either provide the file"))
      << missing.log();
}

// prefer, as libpq: a TLS setup that fails (a root certificate that does not sign the server's) is
// tried again in plain text, which this server refuses by its pg_hba.
TEST_F(PassthroughTlsTest, PreferTriesAgainInPlainTextWhenTheTlsSetupFails) {
  pki_->make_other_ca("prefer-other");
  Sluiced sluiced(config(tcp("sslmode=prefer sslrootcert=" + pki_->dir() + "/prefer-other.crt")));
  const std::string error = first_error(sluiced);
  EXPECT_TRUE(contains(error,
                       "no pg_hba.conf entry for host \"127.0.0.1\", user \"ptt_user\", database "
                       "\"postgres\", no encryption"))
      << error;
}

// The root certificate file is read with the config: replaced on disk, it serves after SIGHUP (the
// conninfo itself did not change).
TEST_F(PassthroughTlsTest, AReloadTakesUpAReplacedRootCertificate) {
  const std::string root = pki_->dir() + "/reloaded-root.crt";
  pki_->make_other_ca("reloaded-other");
  std::filesystem::copy_file(pki_->dir() + "/reloaded-other.crt", root,
                             std::filesystem::copy_options::overwrite_existing);
  Sluiced sluiced(config(tcp("sslmode=verify-full sslrootcert=" + root)));
  EXPECT_TRUE(contains(first_error(sluiced), "certificate verify failed"));
  std::filesystem::copy_file(pki_->ca_cert(), root, std::filesystem::copy_options::overwrite_existing);
  sluiced.send_signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] { return first_error(sluiced).empty(); })) << first_error(sluiced);
}

// sslcert/sslkey: sluiced presents its client certificate (the server asks for one once it has a
// CA); a key others may read is refused in libpq's words.
TEST_F(PassthroughTlsTest, AClientCertificateIsPresented) {
  pki_->issue("sluiced-client", "sluiced-client", 4242, false);
  const std::string data = server_->socket_dir() + "/data";
  std::filesystem::copy_file(pki_->ca_cert(), data + "/client-ca.crt",
                             std::filesystem::copy_options::overwrite_existing);
  const PgConn admin = connect(server_->conninfo());
  exec_ok(admin, "ALTER SYSTEM SET ssl_ca_file = 'client-ca.crt'");
  exec_ok(admin, "SELECT pg_reload_conf()");
  const std::string files =
      " sslcert=" + pki_->dir() + "/sluiced-client.crt sslkey=" + pki_->dir() + "/sluiced-client.key";
  {
    Sluiced sluiced(config(tcp(verify_full() + files)));
    const PgConn client = connect(as_role(sluiced));
    EXPECT_EQ(scalar(client, "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
              "/CN=sluiced-client");
  }
  exec_ok(admin, "ALTER SYSTEM RESET ssl_ca_file");
  exec_ok(admin, "SELECT pg_reload_conf()");
  chmod((pki_->dir() + "/sluiced-client.key").c_str(), 0644);
  Sluiced loose(config(tcp(verify_full() + files)));
  EXPECT_TRUE(contains(first_error(loose), "private key file \"" + pki_->dir() +
                                               "/sluiced-client.key\" has group or world access"));
}

// A listener of the test's own on 127.0.0.1 that answers each SSLRequest with `answer`, then reads
// until the peer hangs up (one peer at a time).
class SslAnswerServer {
 public:
  explicit SslAnswerServer(std::string answer) : listener_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        ::listen(listener_, 8) != 0)
      throw std::runtime_error("SslAnswerServer: no listener");
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this, answer = std::move(answer)] {
      for (;;) {
        const int peer = ::accept(listener_, nullptr, nullptr);
        if (peer < 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
        if (peer < 0) return;  // the destructor shut the listener down
        ++peers_;
        std::array<char, 8> request{};
        if (::recv(peer, request.data(), request.size(), MSG_WAITALL) == 8)
          (void)::send(peer, answer.data(), answer.size(), MSG_NOSIGNAL);
        std::array<char, 64> rest{};
        while (::recv(peer, rest.data(), rest.size(), 0) > 0) {
        }
        ::close(peer);
      }
    });
  }
  ~SslAnswerServer() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  SslAnswerServer(const SslAnswerServer&) = delete;
  SslAnswerServer& operator=(const SslAnswerServer&) = delete;

  [[nodiscard]] std::string conninfo(const std::string& sslmode) const {
    return "host=127.0.0.1 port=" + std::to_string(port_) +
           " dbname=postgres gssencmode=disable connect_timeout=5 sslmode=" + sslmode;
  }
  [[nodiscard]] int peers() const { return peers_; }  // connections accepted so far

 private:
  int listener_;
  int port_ = 0;
  std::atomic<int> peers_{0};
  std::thread thread_;
};

TEST_F(PassthroughTlsTest, RequireAgainstAServerWithoutTlsIsRefused) {
  const SslAnswerServer no_tls("N");
  Sluiced sluiced(config(no_tls.conninfo("require")));
  const auto started = Clock::now();
  const std::string error = first_error(sluiced);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  EXPECT_TRUE(contains(error, "server does not support SSL, but SSL was required")) << error;
}

// An ErrorResponse to the SSLRequest comes from a server that has not proved who it is: libpq 15.10
// and later (CVE-2024-10977) fail with a fixed message in every sslmode and repeat nothing of it,
// and so does sluiced — a client never reads words a man in the middle wrote.
TEST_F(PassthroughTlsTest, AnErrorAnsweringTheSslRequestIsNotRepeated) {
  const std::string words = "forged: your password expired, see evil.example";
  std::string body = "SFATAL";
  body += '\0';
  body += "C28000";
  body += '\0';
  body += "M" + words;
  body += '\0';
  body += '\0';
  const auto length = static_cast<std::uint32_t>(body.size() + 4);
  const std::string error_response =
      std::string("E") + static_cast<char>(length >> 24) + static_cast<char>((length >> 16) & 0xff) +
      static_cast<char>((length >> 8) & 0xff) + static_cast<char>(length & 0xff) + body;
  const SslAnswerServer forger(error_response);
  for (const std::string mode : {"prefer", "require"}) {
    SCOPED_TRACE(mode);
    const std::string direct_error = PQerrorMessage(try_connect(forger.conninfo(mode)).get());
    ASSERT_TRUE(contains(direct_error, "server sent an error response during SSL exchange")) << direct_error;
    // A server that cannot start a backend answers so too: sluiced tries again while a client waits.
    SluicedConfig made = config(forger.conninfo(mode));
    json settings = json::parse(made.text);
    settings["pool"]["query_wait_timeout_ms"] = 1000;
    made.text = settings.dump();
    Sluiced sluiced(std::move(made));
    const int peers_before = forger.peers();
    const std::string error = first_error(sluiced);
    EXPECT_TRUE(contains(error, "server sent an error response during SSL exchange")) << error;
    EXPECT_GE(forger.peers() - peers_before, 2) << "not tried again while the client waited";
    EXPECT_FALSE(contains(error, "evil.example")) << error;
  }
}

// A live upgrade cannot hand over a TLS session (its keys stay in the old process's OpenSSL; the
// new one would read records as protocol messages): a session-mode client whose server is on
// pass-through's TLS is drained at its boundary (57P01), as by SIGTERM, not moved with its server.
TEST_F(PassthroughTlsTest, ALiveUpgradeDrainsASessionWhoseServerIsOnTls) {
  upgradetest::become_subreaper();
  Sluiced old(config(tcp("sslmode=require"), 1, "session"));
  const PgConn client = connect(as_role(old));
  ASSERT_TRUE(backend_ssl(client).starts_with("true ")) << backend_ssl(client);
  std::string heard;  // the FATAL arrives while libpq is idle: its notice processor hears it
  PQsetNoticeProcessor(
      client.get(), [](void* into, const char* message) { *static_cast<std::string*>(into) += message; },
      &heard);

  const auto upgrade = upgradetest::sluicectl_upgrade(old.control_socket());
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.out << upgrade.err;
  upgradetest::NewProcess successor(upgradetest::expect_handed_over(old, upgrade));
  const auto exit = old.wait_exit(std::chrono::seconds(15));
  ASSERT_TRUE(exit && WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << old.log();
  EXPECT_TRUE(wait_until([&] {
    const bool open = PQconsumeInput(client.get()) != 0;
    PQisBusy(client.get());
    return !open;
  }));
  heard += PQerrorMessage(client.get());
  EXPECT_TRUE(contains(heard, "terminating connection due to administrator command")) << heard;
  EXPECT_TRUE(contains(old.log(), "upgrade: 0 clients moved")) << old.log();
  // Its successor serves a new login over a TLS session of its own.
  const PgConn again = connect(as_role(old));
  EXPECT_TRUE(backend_ssl(again).starts_with("true ")) << backend_ssl(again);
}

}  // namespace
