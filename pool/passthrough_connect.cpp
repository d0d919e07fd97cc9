#include "pool/passthrough_connect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sluice::pool {
namespace {

constexpr const char* kDefaultSocketDir = "/var/run/postgresql";  // Debian's libpq default
constexpr const char* kDefaultPort = "5432";

const std::string* find_value(const std::vector<std::string>& keywords,
                              const std::vector<std::string>& values, std::string_view keyword) {
  const std::string* found = nullptr;
  for (std::size_t i = 0; i < keywords.size(); ++i) {
    if (keywords[i] == keyword && !values[i].empty()) found = &values[i];  // the last one wins, as in libpq
  }
  return found;
}

std::string value_or_env(const std::vector<std::string>& keywords, const std::vector<std::string>& values,
                         std::string_view keyword, const char* env, const char* fallback) {
  if (const std::string* value = find_value(keywords, values, keyword)) return *value;
  const char* from_env = std::getenv(env);
  return from_env != nullptr && *from_env != '\0' ? from_env : fallback;
}

Result<ServerAddress> unix_address(const std::string& dir, const std::string& port) {
  ServerAddress target;
  target.description = dir + "/.s.PGSQL." + port;
  auto* address = reinterpret_cast<sockaddr_un*>(&target.address);
  address->sun_family = AF_UNIX;
  // "@name": Linux's abstract namespace, as libpq reads it.
  const bool abstract = dir.starts_with('@');
  std::string path = abstract ? target.description.substr(1) : target.description;
  const std::size_t offset = abstract ? 1 : 0;
  if (path.size() + offset >= sizeof address->sun_path)
    return fail("Unix-domain socket path \"" + target.description + "\" is too long");
  std::memcpy(address->sun_path + offset, path.data(), path.size());
  target.length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + offset + path.size() + (abstract ? 0 : 1));
  return target;
}

Result<ServerAddress> ip_address(const std::string& ip, const std::string& port) {
  char* end = nullptr;
  const long number = std::strtol(port.c_str(), &end, 10);
  if (end == port.c_str() || *end != '\0' || number <= 0 || number > 65535)
    return fail("invalid port number: \"" + port + "\"");
  ServerAddress target;
  target.description = ip + ":" + port;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&target.address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&target.address);
  if (::inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(number));
    target.length = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(number));
    target.length = sizeof(sockaddr_in6);
  } else {
    return fail("could not parse network address \"" + ip + "\"");
  }
  return target;
}

std::string errno_text(int error) { return std::strerror(error); }

}  // namespace

Result<ServerAddress> passthrough_address(const std::vector<std::string>& keywords,
                                          const std::vector<std::string>& values) {
  const std::string port = value_or_env(keywords, values, "port", "PGPORT", kDefaultPort);
  const std::string* hostaddr = find_value(keywords, values, "hostaddr");
  const std::string host = value_or_env(keywords, values, "host", "PGHOST", kDefaultSocketDir);
  for (const std::string* list : {hostaddr, &host, &port}) {
    if (list != nullptr && list->find(',') != std::string::npos)
      return fail("SCRAM pass-through connects to one host; the conninfo lists several");
  }
  if (hostaddr != nullptr) return ip_address(*hostaddr, port);
  if (host.starts_with('/') || host.starts_with('@')) return unix_address(host, port);
  return ip_address(host, port);
}

StartupParameters passthrough_startup(const std::vector<std::string>& keywords,
                                      const std::vector<std::string>& values) {
  StartupParameters startup;
  // libpq's order; dbname is sent as "database".
  for (const auto& [keyword, name] :
       {std::pair{"user", "user"}, std::pair{"dbname", "database"}, std::pair{"options", "options"},
        std::pair{"application_name", "application_name"}, std::pair{"client_encoding", "client_encoding"}}) {
    if (const std::string* value = find_value(keywords, values, keyword)) startup.emplace_back(name, *value);
  }
  return startup;
}

bool passthrough_allowed(const std::vector<std::string>& keywords, const std::vector<std::string>& values) {
  for (const char* list : {"host", "hostaddr", "port"}) {
    const std::string* value = find_value(keywords, values, list);
    if (value != nullptr && value->find(',') != std::string::npos) return false;
  }
  const std::string mode = value_or_env(keywords, values, "sslmode", "PGSSLMODE", "prefer");
  return mode != "require" && mode != "verify-ca" && mode != "verify-full";
}

Result<std::unique_ptr<PassthroughConnect>> PassthroughConnect::start(uv_loop_t* loop,
                                                                      const ServerAddress& address,
                                                                      ServerLogin login, Done done) {
  std::unique_ptr<PassthroughConnect> connect(new PassthroughConnect(std::move(login), std::move(done)));
  const int fd = ::socket(address.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket: " + errno_text(errno));
  auto poll = std::make_unique<Poll>();
  poll->fd = fd;
  if (address.address.ss_family != AF_UNIX) {
    // As libpq: no Nagle delay on the pooled traffic, and keepalives to notice a vanished server.
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address.address), address.length) != 0 &&
      errno != EINPROGRESS) {
    const int error = errno;
    ::close(fd);
    return fail("could not connect to server at \"" + address.description + "\": " + errno_text(error));
  }
  if (const int rc = uv_poll_init_socket(loop, &poll->handle, fd); rc != 0) {
    ::close(fd);
    return fail(std::string("uv_poll_init: ") + uv_strerror(rc));
  }
  poll->handle.data = connect.get();
  connect->poll_ = poll.release();
  connect->output_ = connect->login_.startup_message();
  uv_poll_start(&connect->poll_->handle, UV_WRITABLE, &PassthroughConnect::on_poll);
  return connect;
}

PassthroughConnect::~PassthroughConnect() {
  if (poll_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_->handle), [](uv_handle_t* handle) {
    std::unique_ptr<Poll> poll(reinterpret_cast<Poll*>(handle));  // handle is Poll's first member
    if (poll->fd >= 0) ::close(poll->fd);
  });
}

int PassthroughConnect::release_fd() {
  uv_poll_stop(&poll_->handle);
  return std::exchange(poll_->fd, -1);
}

void PassthroughConnect::on_poll(uv_poll_t* handle, int status, int events) {
  static_cast<PassthroughConnect*>(handle->data)->on_event(status, events);
}

void PassthroughConnect::on_event(int status, int events) {
  if (status < 0) return finish(std::string("server socket: ") + uv_strerror(status));
  if (!connected_) {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(poll_->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error != 0) return finish("could not connect to server: " + errno_text(error));
    connected_ = true;
  }
  if ((events & UV_WRITABLE) != 0 && !flush()) return;
  if ((events & UV_READABLE) != 0) return read_replies();
  watch();
}

bool PassthroughConnect::flush() {
  while (!output_.empty()) {
    const ssize_t n = ::send(poll_->fd, output_.data(), output_.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n < 0) {
      finish("could not send to the server: " + errno_text(errno));
      return false;
    }
    output_.erase(0, static_cast<std::size_t>(n));
  }
  return true;
}

void PassthroughConnect::read_replies() {
  std::array<std::uint8_t, 8192> buffer{};
  const ssize_t n = ::recv(poll_->fd, buffer.data(), buffer.size(), 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return watch();
  if (n < 0) return finish("could not receive data from server: " + errno_text(errno));
  if (n == 0) return finish("server closed the connection unexpectedly during login");
  std::string answer;
  const auto status = login_.on_bytes(protocol::Bytes(buffer.data(), static_cast<std::size_t>(n)), answer);
  if (status == ServerLogin::Status::failed) return finish(login_.failure());
  if (status == ServerLogin::Status::done) return finish("");
  output_ += answer;
  if (!flush()) return;
  watch();
}

void PassthroughConnect::watch() {
  uv_poll_start(&poll_->handle, UV_READABLE | (output_.empty() ? 0 : UV_WRITABLE),
                &PassthroughConnect::on_poll);
}

void PassthroughConnect::finish(const std::string& failure) {
  uv_poll_stop(&poll_->handle);
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(failure);  // may destroy this connect
}

}  // namespace sluice::pool
