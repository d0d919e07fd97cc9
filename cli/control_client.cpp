#include "cli/control_client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "cli/exit_codes.h"

namespace sluice::cli {
namespace {

// Enough for a clients list of a very busy daemon; beyond it something is wrong.
constexpr std::size_t kMaxAnswerBytes = std::size_t{512} * 1024 * 1024;

Failure<ClientError> failure(int exit_code, std::string message, bool daemon_gone = false) {
  return Failure<ClientError>{ClientError{exit_code, std::move(message), daemon_gone}};
}

Failure<ClientError> connect_failure(const std::string& path, int error) {
  const std::string prefix = "cannot connect to " + path + ": ";
  switch (error) {
    case ENOENT:
    case ECONNREFUSED:
      return failure(kExitNotRunning, prefix + "daemon not running?", /*daemon_gone=*/true);
    case EACCES:
    case EPERM:
      return failure(kExitPermissionDenied, prefix +
                                                "permission denied (run as root, the daemon's user, or a "
                                                "member of control.group)");
    case EAGAIN:
      return failure(kExitError, prefix + "daemon busy (listen backlog full)");
    default:
      return failure(kExitError, prefix + std::strerror(error));
  }
}

}  // namespace

Result<ControlClient, ClientError> ControlClient::connect(const std::string& socket_path,
                                                          std::chrono::seconds timeout) {
  sockaddr_un address{};
  if (socket_path.empty() || socket_path.size() >= sizeof address.sun_path) {
    return failure(kExitUsage, "invalid control socket path '" + socket_path + "'");
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return failure(kExitError, std::string("socket: ") + std::strerror(errno));
  ControlClient client(fd, socket_path);
  // A stuck daemon must not hang the CLI: every send and receive times out.
  timeval limit{static_cast<time_t>(timeout.count()), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  for (;;) {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) break;
    if (errno == EINTR) continue;
    return connect_failure(socket_path, errno);
  }
  return client;
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

ControlClient::ControlClient(ControlClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      socket_path_(std::move(other.socket_path_)),
      buffered_(std::move(other.buffered_)) {}

ControlClient& ControlClient::operator=(ControlClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    socket_path_ = std::move(other.socket_path_);
    buffered_ = std::move(other.buffered_);
  }
  return *this;
}

Result<Response, ClientError> ControlClient::request(const nlohmann::json& request) {
  if (fd_ < 0) return failure(kExitError, "not connected to " + socket_path_);
  // A refused peer is answered and closed at once, possibly before our send:
  // a failed send still leaves that answer to read.
  const bool sent = send_all(request.dump() + "\n");
  const int send_errno = errno;
  auto line = read_line();
  if (!line) {
    if (!sent && send_errno != EAGAIN && send_errno != EWOULDBLOCK) {
      return failure(
          kExitError,
          "lost the connection to " + socket_path_ + ": " + std::strerror(send_errno) + " (daemon exited?)",
          /*daemon_gone=*/true);
    }
    return Failure<ClientError>{line.error()};
  }
  Response response;
  response.line = std::move(*line);
  try {
    response.body = nlohmann::json::parse(response.line);
  } catch (const nlohmann::json::exception& error) {
    return failure(kExitError, std::string("the daemon sent a malformed answer: ") + error.what());
  }
  return response;
}

bool ControlClient::send_all(const std::string& bytes) const {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

Result<std::string, ClientError> ControlClient::read_line() {
  for (;;) {
    if (const auto newline = buffered_.find('\n'); newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    if (buffered_.size() > kMaxAnswerBytes) return failure(kExitError, "the daemon's answer is too long");
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffered_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return failure(kExitError,
                     "the daemon did not answer in time on " + socket_path_ + " (event loop stuck?)");
    }
    const std::string why = n == 0 ? "connection closed" : std::strerror(errno);
    return failure(kExitError, "lost the connection to " + socket_path_ + ": " + why + " (daemon exited?)",
                   /*daemon_gone=*/true);
  }
}

std::optional<ClientError> answer_error(const Response& response) {
  if (!response.body.is_object()) return std::nullopt;
  const auto error = response.body.find("error");
  if (error == response.body.end()) return std::nullopt;
  const std::string message = error->is_string() ? error->get<std::string>() : error->dump();
  const int code = message.starts_with("permission denied") ? kExitPermissionDenied : kExitUsage;
  return ClientError{code, "daemon: " + message};
}

}  // namespace sluice::cli
