#include "tests/integration/raw_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/integration/harness.h"

namespace harness {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string os_user() {
  const passwd* pw = getpwuid(geteuid());
  return pw != nullptr ? pw->pw_name : "";
}

std::map<char, std::string> error_fields(const Message& message) {
  std::map<char, std::string> fields;
  std::size_t at = 0;
  while (at < message.payload.size() && message.payload[at] != '\0') {
    const char code = message.payload[at++];
    const std::size_t end = message.payload.find('\0', at);
    if (end == std::string::npos) break;
    fields[code] = message.payload.substr(at, end - at);
    at = end + 1;
  }
  return fields;
}

std::string be32(std::uint32_t value) {
  const std::uint32_t net = htonl(value);
  return {reinterpret_cast<const char*>(&net), sizeof net};
}

std::string startup_packet(const std::vector<std::pair<std::string, std::string>>& parameters) {
  std::string body = be32(196608);  // protocol 3.0
  for (const auto& [name, value] : parameters) {
    body += name;
    body += '\0';
    body += value;
    body += '\0';
  }
  body += '\0';
  return be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}

std::string startup_packet() { return startup_packet({{"user", os_user()}, {"database", "postgres"}}); }

std::string query_message(const std::string& sql) {
  return "Q" + be32(static_cast<std::uint32_t>(sql.size() + 5)) + sql + '\0';
}

RawClient::RawClient(const std::string& path) : fd_(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    close(fd_);
    throw std::runtime_error("connect " + path + ": " + std::strerror(error));
  }
}

RawClient::RawClient(int tcp_port) : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(tcp_port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    close(fd_);
    throw std::runtime_error("connect 127.0.0.1:" + std::to_string(tcp_port) + ": " + std::strerror(error));
  }
}

RawClient::~RawClient() { close(fd_); }

void RawClient::send(const std::string& bytes) const {
  if (!try_send(bytes)) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
}

bool RawClient::try_send(const std::string& bytes) const {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

void RawClient::shutdown_write() const { ::shutdown(fd_, SHUT_WR); }

std::optional<std::string> RawClient::read_bytes(std::size_t count, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (buffer_.size() < count) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left <= milliseconds::zero()) return std::nullopt;
    pollfd readable{.fd = fd_, .events = POLLIN, .revents = 0};
    if (poll(&readable, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[8192];
    const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      return std::nullopt;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
  std::string bytes = buffer_.substr(0, count);
  buffer_.erase(0, count);
  return bytes;
}

std::optional<Message> read_message_with(
    const std::function<std::optional<std::string>(std::size_t)>& read_bytes) {
  const auto header = read_bytes(5);
  if (!header) return std::nullopt;
  std::uint32_t length = 0;
  std::memcpy(&length, header->data() + 1, sizeof length);
  length = ntohl(length);
  if (length < 4) throw std::runtime_error("message with length " + std::to_string(length));
  const auto payload = read_bytes(length - 4);
  if (!payload) return std::nullopt;
  return Message{(*header)[0], *payload};
}

std::optional<Message> RawClient::read_message(milliseconds timeout) {
  return read_message_with([&](std::size_t count) { return read_bytes(count, timeout); });
}

std::optional<Message> RawClient::read_until(char type, std::vector<Message>* skipped) {
  for (;;) {
    auto message = read_message();
    if (!message || message->type == type || message->type == 'E') return message;
    if (skipped != nullptr) skipped->push_back(*message);
  }
}

std::string RawClient::login() {
  if (!try_send(startup_packet())) return "send failed";
  const auto ready = read_until('Z');
  if (!ready) return "no ReadyForQuery";
  if (ready->type == 'E') return "error: " + error_fields(*ready)['M'];
  return ready->payload;
}

bool RawClient::closed_by_peer(milliseconds timeout) {
  while (!eof_) {
    buffer_.clear();
    if (!read_bytes(1, timeout) && !eof_) return false;
  }
  return true;
}

std::string dirty_backends() {
  const PgConn observer = connect(postgres().conninfo());
  const PgResult result = exec(observer,
                               "SELECT pid, state, query FROM pg_stat_activity "
                               "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                               "AND state IS DISTINCT FROM 'idle'");
  std::string rows;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    rows += std::string(PQgetvalue(result.get(), row, 0)) + " " + PQgetvalue(result.get(), row, 1) + ": " +
            PQgetvalue(result.get(), row, 2) + "\n";
  }
  return rows;
}

}  // namespace harness
