// Hostile clients on the TLS listener: a ClientHello cut short, garbage or a plain StartupMessage
// where the handshake should be, a second SSLRequest (answered as PostgreSQL answers it). None of
// them may hold the loop, hurt other clients, or leave a file descriptor behind.
#include <dirent.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/tls_helpers.h"

namespace {

using namespace harness;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr int kLoginTimeoutMs = 2500;
const std::string kSslRequest = be32(8) + be32(80877103);
// The first bytes of a TLS 1.2 ClientHello record: a header announcing 512 bytes, then a few.
const std::string kHalfClientHello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);

std::size_t open_fds(pid_t pid) {
  std::size_t count = 0;
  if (DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (const dirent* entry = readdir(dir)) count += entry->d_name[0] != '.' ? 1 : 0;
    closedir(dir);
  }
  return count;
}

nlohmann::json hostile_overrides(const TestPki& pki, int port) {
  nlohmann::json overrides = tls_overrides(pki, "require", port);
  overrides["limits"] = {{"login_timeout_ms", kLoginTimeoutMs}};
  return overrides;
}

TEST(HostileTlsTest, StalledHandshakesAreClosedAtLoginTimeoutWhileOthersAreServed) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = hostile_overrides(pki, port)});
  const PgConn warm = connect(tcp_conninfo(port, "sslmode=require"));  // the pool's server opened
  EXPECT_EQ(scalar(warm, "SELECT 'warm'"), "warm");
  const std::size_t fds_before = open_fds(sluiced.pid());

  RawClient after_request(port);  // SSLRequest, 'S', then half a ClientHello, then silence
  after_request.send(kSslRequest);
  ASSERT_EQ(after_request.read_bytes(1), std::optional<std::string>("S"));
  after_request.send(kHalfClientHello);
  RawClient direct(port);  // direct TLS, half a ClientHello, silence
  direct.send(kHalfClientHello);
  const auto stalled_at = Clock::now();

  // Meanwhile the loop serves everyone else, over TLS and not.
  EXPECT_EQ(scalar(connect(tcp_conninfo(port, "sslmode=require")), "SELECT 'served'"), "served");
  EXPECT_EQ(scalar(connect(sluiced.conninfo()), "SELECT 'unix'"), "unix");
  // ... while the stalled ones are still there: they were served meanwhile, not after.
  EXPECT_FALSE(after_request.closed_by_peer(milliseconds(100)));
  EXPECT_FALSE(direct.closed_by_peer(milliseconds(100)));

  EXPECT_TRUE(after_request.closed_by_peer(milliseconds(kLoginTimeoutMs + 5000)));
  EXPECT_TRUE(direct.closed_by_peer(milliseconds(kLoginTimeoutMs + 5000)));
  EXPECT_GE(Clock::now() - stalled_at, milliseconds(kLoginTimeoutMs - 100))
      << "closed before login_timeout_ms";
  EXPECT_TRUE(wait_until([&] { return open_fds(sluiced.pid()) == fds_before; }))
      << open_fds(sluiced.pid()) << " fds, " << fds_before << " before";
}

TEST(HostileTlsTest, WhatIsNotAHandshakeAfterSIsRefused) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = hostile_overrides(pki, port)});
  const PgConn warm = connect(tcp_conninfo(port, "sslmode=require"));  // the pool's server opened
  const std::size_t fds_before = open_fds(sluiced.pid());

  for (const std::string& instead : {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), startup_packet(),
                                     std::string(4096, '\x16'), kSslRequest}) {
    SCOPED_TRACE(instead.substr(0, 8));
    RawClient raw(port);
    raw.send(kSslRequest);
    ASSERT_EQ(raw.read_bytes(1), std::optional<std::string>("S"));
    raw.try_send(instead);
    // An alert at most, never a plain-text reply: the client asked for TLS.
    const auto first = raw.read_bytes(1, milliseconds(kLoginTimeoutMs + 5000));
    if (first) {
      EXPECT_EQ(*first, "\x15") << "a TLS alert record";
    }
    EXPECT_TRUE(raw.closed_by_peer(milliseconds(kLoginTimeoutMs + 5000)));
  }
  EXPECT_EQ(scalar(warm, "SELECT 'unharmed'"), "unharmed");
  EXPECT_TRUE(wait_until([&] { return open_fds(sluiced.pid()) == fds_before; }))
      << open_fds(sluiced.pid()) << " fds, " << fds_before << " before";
}

// What PostgreSQL says to a second SSLRequest: its code read as protocol version 1234.5679.
std::map<char, std::string> second_ssl_request_answer(RawClient& raw) {
  raw.send(kSslRequest);
  EXPECT_EQ(raw.read_bytes(1), std::optional<std::string>("N"));
  raw.send(kSslRequest);
  const auto error = raw.read_message();
  if (!error || error->type != 'E') return {};
  return error_fields(*error);
}

TEST(HostileTlsTest, ASecondSslRequestIsAnsweredAsPostgresqlDoes) {
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced({.pool_size = 1, .overrides = hostile_overrides(pki, port)});

  RawClient direct_to_postgres(postgres().socket_dir() + "/.s.PGSQL." + std::to_string(postgres().port()));
  const auto expected = second_ssl_request_answer(direct_to_postgres);
  ASSERT_EQ(expected.at('C'), "0A000");
  EXPECT_EQ(expected.at('M'), "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0");

  RawClient on_unix(sluiced.socket_path());  // no TLS there: 'N', as PostgreSQL without ssl
  const auto answer = second_ssl_request_answer(on_unix);
  EXPECT_EQ(answer.at('C'), expected.at('C'));
  EXPECT_EQ(answer.at('M'), expected.at('M'));

  TlsClient inside_tls(port, {.ssl_request = true});  // and inside TLS, encrypted
  ASSERT_TRUE(inside_tls.handshake()) << inside_tls.failure();
  ASSERT_TRUE(inside_tls.send(kSslRequest));
  const auto error = inside_tls.read_message();
  ASSERT_TRUE(error);
  ASSERT_EQ(error->type, 'E');
  EXPECT_EQ(error_fields(*error)['C'], expected.at('C'));
  EXPECT_EQ(error_fields(*error)['M'], expected.at('M'));
}

}  // namespace
