// Certificates reloaded on SIGHUP (README "TLS"): new connections get the new certificate while
// TLS traffic runs on, connections made before keep theirs, and a bad new certificate keeps the
// old one with the reason in the log.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/tls_helpers.h"

namespace {

using namespace harness;
using namespace std::chrono_literals;

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

// Swaps the server's certificate and key (renamed into place, each whole), then SIGHUP, and waits
// for the reload's verdict in the log.
void swap_certificate_and_reload(const TestPki& pki, Sluiced& sluiced, const std::string& name) {
  const std::size_t reloads =
      count_of(sluiced.log(), "reload applied") + count_of(sluiced.log(), "reload rejected");
  ASSERT_EQ(std::rename((pki.dir() + "/" + name + ".crt").c_str(), pki.server_cert().c_str()), 0);
  ASSERT_EQ(std::rename((pki.dir() + "/" + name + ".key").c_str(), pki.server_key().c_str()), 0);
  sluiced.send_signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    return count_of(sluiced.log(), "reload applied") + count_of(sluiced.log(), "reload rejected") > reloads;
  }));
}

TEST(TlsReloadTest, SighupSwapsTheCertificateUnderTlsLoad) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 4, .overrides = tls_overrides(pki, "require", port)});
  const PgConn before = connect(tcp_conninfo(port, "sslmode=require"));
  ASSERT_EQ(server_serial(before), "03E8");

  // pgbench over TLS, a new connection per transaction (-C) so that handshakes straddle the swap.
  std::ofstream(pki.dir() + "/select.sql") << "SELECT 1;\n";
  Captured bench;
  std::thread load([&] {
    bench =
        run_capture({"pgbench", "-n", "-C", "-c", "4", "-j", "2", "-T", "4", "-f", pki.dir() + "/select.sql",
                     "-h", "127.0.0.1", "-p", std::to_string(port), "postgres"},
                    60s, {"PGSSLMODE=require"});
  });
  ASSERT_TRUE(wait_until([&] {
    const auto clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
    return clients["clients"].size() >= 3;  // pgbench is connecting
  }));
  pki.issue("next", "localhost", 2000, /*server=*/true);
  swap_certificate_and_reload(pki, sluiced, "next");
  EXPECT_NE(sluiced.log().find("reload applied"), std::string::npos) << sluiced.log();
  EXPECT_TRUE(
      wait_until([&] { return server_serial(connect(tcp_conninfo(port, "sslmode=require"))) == "07D0"; }));
  load.join();

  EXPECT_TRUE(bench.succeeded()) << bench.describe() << "\n" << bench.out << bench.err;
  EXPECT_NE(bench.out.find("number of failed transactions: 0 "), std::string::npos) << bench.out;
  // A connection made before the swap keeps its session and its certificate.
  EXPECT_EQ(scalar(before, "SELECT 'before'"), "before");
  EXPECT_EQ(server_serial(before), "03E8");
}

TEST(TlsReloadTest, ABadNewCertificateKeepsTheOldOne) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = tls_overrides(pki, "require", port)});

  std::ofstream(pki.dir() + "/garbage.crt") << "not a certificate\n";
  std::ifstream key(pki.server_key());
  std::ofstream(pki.dir() + "/garbage.key") << key.rdbuf();
  swap_certificate_and_reload(pki, sluiced, "garbage");
  EXPECT_NE(sluiced.log().find("reload rejected, configuration unchanged: " + sluiced.config_path()),
            std::string::npos)
      << sluiced.log();
  EXPECT_NE(sluiced.log().find("key 'tls.cert_file': no usable certificate"), std::string::npos)
      << sluiced.log();
  EXPECT_EQ(server_serial(connect(tcp_conninfo(port, "sslmode=require"))), "03E8");

  // A certificate whose key is another's: rejected too, with that reason.
  pki.issue("mismatched", "localhost", 3000, /*server=*/true);
  pki.issue("other-key", "localhost", 3001, /*server=*/true);
  ASSERT_EQ(std::rename((pki.dir() + "/other-key.key").c_str(), (pki.dir() + "/mismatched.key").c_str()), 0);
  swap_certificate_and_reload(pki, sluiced, "mismatched");
  EXPECT_NE(sluiced.log().find("does not match the certificate"), std::string::npos) << sluiced.log();
  EXPECT_EQ(server_serial(connect(tcp_conninfo(port, "sslmode=require"))), "03E8");
}

TEST(TlsReloadTest, CheckNamesTheKeyAndLineOfABadFile) {
  const TestPki pki;
  SluicedConfig config = default_config({.overrides = tls_overrides(pki, "require", free_tcp_port())});
  auto document = nlohmann::json::parse(config.text);
  document["tls"]["key_file"] = pki.dir() + "/missing.key";
  const std::string path = config.dir.path() + "/check.json";
  std::ofstream(path) << document.dump(2);
  const Captured check = run_capture({sluiced_path(), "--check", "-c", path}, 30s);
  EXPECT_EQ(WEXITSTATUS(check.status), 1);
  // dump(2) puts each key on a line of its own; "key_file" is on the one that names it.
  std::ifstream file(path);
  int line = 0;
  int key_line = 0;
  for (std::string text; std::getline(file, text);) {
    ++line;
    if (text.find("\"key_file\"") != std::string::npos) key_line = line;
  }
  EXPECT_NE(check.err.find(path + ":" + std::to_string(key_line) + ": key 'tls.key_file': cannot read \"" +
                           pki.dir() + "/missing.key\": No such file or directory"),
            std::string::npos)
      << check.err;
}

}  // namespace

namespace {

using namespace harness;

// Named Workers* so that make test-sanitized runs it against the ThreadSanitizer build: two loops
// make SSL objects from one shared context, and a reload hands both the new one.
TEST(WorkersTlsTest, TwoWorkerLoopsServeTlsAndSwapTheCertificate) {
  const TestPki pki;
  const int port = free_tcp_port();
  nlohmann::json overrides = tls_overrides(pki, "require", port);
  overrides["workers"] = 2;
  Sluiced sluiced({.pool_size = 4, .overrides = overrides});
  std::vector<PgConn> before;
  for (int i = 0; i < 6; ++i) before.push_back(connect(tcp_conninfo(port, "sslmode=require")));
  for (const PgConn& conn : before) EXPECT_EQ(scalar(conn, "SELECT 'first'"), "first");

  pki.issue("next", "localhost", 2000, /*server=*/true);
  swap_certificate_and_reload(pki, sluiced, "next");
  std::vector<PgConn> after;
  for (int i = 0; i < 6; ++i) after.push_back(connect(tcp_conninfo(port, "sslmode=require")));
  for (const PgConn& conn : after) {
    EXPECT_EQ(server_serial(conn), "07D0");
    EXPECT_EQ(scalar(conn, "SELECT 'second'"), "second");
  }
  for (const PgConn& conn : before) {
    EXPECT_EQ(server_serial(conn), "03E8");
    EXPECT_EQ(scalar(conn, "SELECT 'still'"), "still");
  }
  const auto clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
  std::set<int> workers;
  for (const auto& client : clients["clients"]) workers.insert(client["worker"].get<int>());
  EXPECT_EQ(workers.size(), 2U) << clients.dump();
}

}  // namespace
