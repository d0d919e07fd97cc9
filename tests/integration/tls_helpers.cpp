#include "tests/integration/tls_helpers.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace harness {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void openssl(const std::vector<std::string>& arguments) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  const Captured run = run_capture(argv, std::chrono::seconds(30));
  if (!run.succeeded())
    throw std::runtime_error("openssl " + arguments.front() + ": " + run.describe() + ": " + run.err);
}

std::vector<std::string> new_ec_key_request(const std::string& key, const std::string& common_name) {
  return {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", key,  "-subj",    "/CN=" + common_name};
}

std::string serial_hex(X509* certificate) {
  std::string serial;
  if (BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr)) {
    if (char* hex = BN_bn2hex(number)) {
      serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(number);
  }
  return serial;
}

}  // namespace

TestPki::TestPki(const std::string& ca_name) : dir_("sluice-pki") {
  auto request = new_ec_key_request(dir() + "/ca.key", ca_name);
  request.insert(request.begin(), {"req", "-x509", "-days", "2", "-out", ca_cert()});
  openssl(request);
  issue("server", "localhost", 1000, /*server=*/true);
}

void TestPki::issue(const std::string& name, const std::string& common_name, long serial, bool server) const {
  const std::string base = dir() + "/" + name;
  auto request = new_ec_key_request(base + ".key", common_name);
  request.insert(request.begin(), {"req", "-out", base + ".csr"});
  openssl(request);
  std::vector<std::string> sign{"x509",        "-req",
                                "-in",         base + ".csr",
                                "-CA",         ca_cert(),
                                "-CAkey",      dir() + "/ca.key",
                                "-set_serial", std::to_string(serial),
                                "-days",       "2",
                                "-out",        base + ".crt"};
  if (server) {
    std::ofstream(base + ".ext") << "subjectAltName=DNS:localhost\n";
    sign.insert(sign.end(), {"-extfile", base + ".ext"});
  }
  openssl(sign);
  chmod((base + ".key").c_str(), 0600);  // libpq refuses a client key others may read
}

void TestPki::make_other_ca(const std::string& name) const {
  const std::string base = dir() + "/" + name;
  auto request = new_ec_key_request(base + ".key", "Some Other CA");
  request.insert(request.begin(), {"req", "-x509", "-days", "2", "-out", base + ".crt"});
  openssl(request);
}

nlohmann::json tls_overrides(const TestPki& pki, const std::string& mode, int tcp_port) {
  return {{"listen", {{"tcp", "127.0.0.1:" + std::to_string(tcp_port)}}},
          {"tls",
           {{"mode", mode},
            {"cert_file", pki.server_cert()},
            {"key_file", pki.server_key()},
            {"ca_file", pki.ca_cert()}}}};
}

std::string tcp_conninfo(int port, const std::string& options) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=postgres connect_timeout=10 " + options;
}

std::string server_serial(const PgConn& conn) {
  auto* ssl = static_cast<SSL*>(PQsslStruct(conn.get(), "OpenSSL"));
  if (ssl == nullptr) return "";
  X509* certificate = SSL_get0_peer_certificate(ssl);
  return certificate != nullptr ? serial_hex(certificate) : "";
}

TlsClient::TlsClient(int port, const Options& options) {
  // OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a server that hung up must be an EPIPE
  // the test sees, not a SIGPIPE that ends the test binary.
  std::signal(SIGPIPE, SIG_IGN);
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || ::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    throw std::runtime_error("TlsClient: connect: " + std::string(std::strerror(errno)));
  }
  const timeval limit{.tv_sec = 5, .tv_usec = 0};  // a handshake never hangs the test
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  context_ = SSL_CTX_new(TLS_client_method());
  if (!options.ca_file.empty()) {
    SSL_CTX_load_verify_locations(context_, options.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(context_, SSL_VERIFY_PEER, nullptr);
  }
  ssl_ = SSL_new(context_);
  SSL_set1_host(ssl_, "localhost");
  if (!options.alpn.empty()) {
    const std::string wire = static_cast<char>(options.alpn.size()) + options.alpn;
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned int>(wire.size()));
  }
  SSL_set_fd(ssl_, fd_);
  if (options.ssl_request) {
    const std::string request = be32(8) + be32(80877103);
    char answer = 0;
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) != 8 || ::recv(fd_, &answer, 1, 0) != 1 ||
        answer != 'S') {
      failure_ = std::string("SSLRequest answered ") + (answer != 0 ? std::string(1, answer) : "nothing");
    }
  }
}

TlsClient::~TlsClient() {
  SSL_free(ssl_);
  SSL_CTX_free(context_);
  if (fd_ >= 0) close(fd_);
}

bool TlsClient::handshake() {
  if (!failure_.empty()) return false;
  ERR_clear_error();
  if (SSL_connect(ssl_) == 1) return true;
  const unsigned long code = ERR_get_error();
  failure_ = code != 0 ? ERR_reason_error_string(code) : "connection closed during the handshake";
  return false;
}

std::string TlsClient::version() const { return SSL_get_version(ssl_); }

bool TlsClient::send(const std::string& bytes) {
  std::size_t written = 0;
  return SSL_write_ex(ssl_, bytes.data(), bytes.size(), &written) == 1 && written == bytes.size();
}

std::optional<std::string> TlsClient::read_bytes(std::size_t count, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (buffer_.size() < count) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left <= milliseconds::zero()) return std::nullopt;
    if (SSL_pending(ssl_) == 0) {
      pollfd readable{.fd = fd_, .events = POLLIN, .revents = 0};
      if (poll(&readable, 1, static_cast<int>(left.count())) <= 0) continue;
    }
    char chunk[16384];
    std::size_t n = 0;
    if (SSL_read_ex(ssl_, chunk, sizeof chunk, &n) != 1) {
      if (SSL_get_error(ssl_, 0) == SSL_ERROR_WANT_READ) continue;
      return std::nullopt;  // closed: an alert, close_notify or EOF
    }
    buffer_.append(chunk, n);
  }
  std::string bytes = buffer_.substr(0, count);
  buffer_.erase(0, count);
  return bytes;
}

std::optional<Message> TlsClient::read_message(milliseconds timeout) {
  return read_message_with([&](std::size_t count) { return read_bytes(count, timeout); });
}

std::string TlsClient::login() {
  if (!send(startup_packet())) return "send failed";
  for (;;) {
    const auto message = read_message();
    if (!message) return "no ReadyForQuery";
    if (message->type == 'E') return "error: " + error_fields(*message)['M'];
    if (message->type == 'Z') return message->payload;
  }
}

bool TlsClient::closed_by_peer(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    buffer_.clear();
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (!read_bytes(1, left)) return Clock::now() < deadline;
  }
  return false;
}

void take_turns_on_one_server(const PgConn& first, const PgConn& second, int turns) {
  for (int turn = 0; turn < turns; ++turn) {
    const PgConn& client = turn % 2 == 0 ? first : second;
    exec_ok(client, "BEGIN");
    exec_ok(client, "SET LOCAL work_mem = '" + std::to_string(64 + turn) + "kB'");
    EXPECT_EQ(scalar(client, "SELECT count(*) FROM generate_series(1, 1000)"), "1000");
    exec_ok(client, "COMMIT");
    exec_ok(client, "SET application_name = 'client " + std::to_string(turn % 2) + "'");
  }
  EXPECT_EQ(scalar(first, "SHOW application_name"), "client 0");
  EXPECT_EQ(scalar(second, "SHOW application_name"), "client 1");
}

void expect_served_over_tls(const PgConn& conn, const PgConn& direct) {
  EXPECT_EQ(scalar(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t");
  // 4 MiB one way: hundreds of records, reads that stop mid-record.
  const std::string big =
      "SELECT md5(string_agg(repeat(md5(g::text), 8), '')) FROM generate_series(1, 16384) g";
  const std::string rows = "SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 16384) g";
  EXPECT_EQ(scalar(conn, big), scalar(direct, big));
  const PgResult pooled = exec(conn, rows);
  const PgResult straight = exec(direct, rows);
  ASSERT_EQ(PQntuples(pooled.get()), 16384);
  EXPECT_EQ(std::string(PQgetvalue(pooled.get(), 16383, 1)), PQgetvalue(straight.get(), 16383, 1));
  // ... and the other: a 2 MiB statement.
  const std::string literal(2 * 1024 * 1024, 'x');
  EXPECT_EQ(scalar(conn, "SELECT md5('" + literal + "')"), scalar(direct, "SELECT md5('" + literal + "')"));
}

}  // namespace harness
