#include "pool/passthrough_connect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "config/tls_context.h"
#include "pool/server_certificate_name.h"

namespace sluice::pool {
namespace {

constexpr const char* kDefaultSocketDir = "/var/run/postgresql";  // Debian's libpq default
constexpr const char* kDefaultPort = "5432";
constexpr std::uint32_t kSslRequestCode = 80877103;  // 1234 << 16 | 5679

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

std::string ssl_request() {
  std::string message;
  protocol::append_u32(message, 8);
  protocol::append_u32(message, kSslRequestCode);
  return message;
}

bool requires_tls(config::SslMode mode) {
  return mode == config::SslMode::require || mode == config::SslMode::verify_ca ||
         mode == config::SslMode::verify_full;
}

// libpq's SNI rule (RFC 6066): a host name, never an IP address.
bool names_a_host(const std::string& host) {
  return !host.empty() && host.find_first_not_of("0123456789.") != std::string::npos &&
         host.find(':') == std::string::npos;
}

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
  const bool on_socket = host.starts_with('/') || host.starts_with('@');
  Result<ServerAddress> address = hostaddr != nullptr ? ip_address(*hostaddr, port)
                                  : on_socket         ? unix_address(host, port)
                                                      : ip_address(host, port);
  // With only hostaddr, libpq has no host name either (verify-full then fails).
  const std::string* named = find_value(keywords, values, "host");
  if (address && address->address.ss_family != AF_UNIX && !on_socket)
    address->host_name = named != nullptr || hostaddr == nullptr ? host : std::string();
  return address;
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
  // GSSAPI encryption is libpq's alone: a pool that demands it keeps libpq's login (which then says
  // sluiced cannot carry it) rather than log in without it.
  if (value_or_env(keywords, values, "gssencmode", "PGGSSENCMODE", "prefer") == "require") return false;
  return std::ranges::none_of(std::array{"host", "hostaddr", "port"}, [&](const char* list) {
    const std::string* value = find_value(keywords, values, list);
    return value != nullptr && value->find(',') != std::string::npos;
  });
}

Result<std::unique_ptr<PassthroughConnect>> PassthroughConnect::start(
    uv_loop_t* loop, const ServerAddress& address, std::shared_ptr<const config::ServerTlsContext> tls,
    ServerLogin login, Done done) {
  std::unique_ptr<PassthroughConnect> connect(
      new PassthroughConnect(loop, address, std::move(tls), std::move(login), std::move(done)));
  // As libpq: never TLS over a Unix socket; disable asks for none; prefer (and allow, served as
  // prefer) goes on in plain text where libpq would, after a TLS setup it could not make.
  // A value libpq refuses (PGSSLMODE=verify_full, say) refuses every connect, as libpq's does: never
  // a plain-text login in its place.
  if (connect->context_ && !connect->context_->settings().invalid.empty())
    return fail(connect->context_->settings().invalid);
  bool try_tls = false;
  if (connect->context_ && address.address.ss_family != AF_UNIX &&
      connect->context_->settings().mode != config::SslMode::disable) {
    const std::string& failure = connect->context_->failure();
    if (!failure.empty() && requires_tls(connect->context_->settings().mode)) return fail(failure);
    try_tls = failure.empty();
  }
  if (auto problem = connect->open(try_tls)) return fail(*problem);
  return connect;
}

std::optional<std::string> PassthroughConnect::open(bool try_tls) {
  const int fd = ::socket(address_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text(errno);
  if (address_.address.ss_family != AF_UNIX) {
    // As libpq: no Nagle delay on the pooled traffic, and keepalives to notice a vanished server.
    const int on = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address_.address), address_.length) != 0 &&
      errno != EINPROGRESS) {
    const int error = errno;
    ::close(fd);
    return "could not connect to server at \"" + address_.description + "\": " + errno_text(error);
  }
  auto poll = std::make_unique<Poll>();
  poll->fd = fd;
  if (const int rc = uv_poll_init_socket(loop_, &poll->handle, fd); rc != 0) {
    ::close(fd);
    return std::string("uv_poll_init: ") + uv_strerror(rc);
  }
  poll->handle.data = this;
  poll_ = poll.release();
  phase_ = Phase::connecting;
  asks_tls_ = try_tls;
  output_ = try_tls ? ssl_request() : login_.startup_message();
  uv_poll_start(&poll_->handle, UV_WRITABLE, &PassthroughConnect::on_poll);
  return std::nullopt;
}

PassthroughConnect::~PassthroughConnect() { close_poll(); }

void PassthroughConnect::close_poll() {
  if (poll_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_->handle), [](uv_handle_t* handle) {
    std::unique_ptr<Poll> poll(reinterpret_cast<Poll*>(handle));  // handle is Poll's first member
    if (poll->fd >= 0) ::close(poll->fd);
  });
  poll_ = nullptr;
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
  if (phase_ == Phase::connecting) {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(poll_->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error != 0) return finish("could not connect to server: " + errno_text(error));
    phase_ = asks_tls_ ? Phase::ssl_request : Phase::login;  // what open() queued goes out now
  }
  if (phase_ == Phase::handshake) return advance_handshake();
  if ((events & UV_WRITABLE) != 0 && !flush()) return;
  // Through TLS a writable socket may be what a read waited for (OpenSSL had to send first).
  if ((events & UV_READABLE) != 0 || (tls_ && (events & UV_WRITABLE) != 0))
    return phase_ == Phase::ssl_request ? read_ssl_answer() : read_replies();
  watch();
}

bool PassthroughConnect::flush() {
  while (!output_.empty()) {
    std::size_t taken = 0;
    if (tls_) {
      const net::TlsChannel::Io io = tls_->write(output_.data(), output_.size());
      tls_wants_write_ = io.status == net::TlsChannel::Status::want_write;
      if (tls_wants_write_) return true;
      if (io.status != net::TlsChannel::Status::done) {
        finish("SSL error: " +
               (tls_->failure().empty() ? std::string("connection closed") : tls_->failure()));
        return false;
      }
      taken = io.bytes;
    } else {
      const ssize_t n = ::send(poll_->fd, output_.data(), output_.size(), MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      if (n < 0) {
        finish("could not send to the server: " + errno_text(errno));
        return false;
      }
      taken = static_cast<std::size_t>(n);
    }
    output_.erase(0, taken);
  }
  return true;
}

// libpq 15's reading of the answer: one byte, nothing after it taken from the kernel (what follows
// 'S' is the server's TLS, for OpenSSL).
void PassthroughConnect::read_ssl_answer() {
  char answer = 0;
  const ssize_t n = ::recv(poll_->fd, &answer, 1, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return watch();
  if (n < 0) return finish("could not receive data from server: " + errno_text(errno));
  if (n == 0) return finish("server closed the connection unexpectedly during login");
  const config::SslMode mode = context_->settings().mode;
  switch (answer) {
    case 'S': {
      const std::string sni =
          context_->settings().sni && names_a_host(address_.host_name) ? address_.host_name : "";
      tls_ = net::TlsChannel::connect(poll_->fd, context_->ssl_context(), sni);
      if (!tls_) return finish("could not establish SSL connection: out of memory");
      phase_ = Phase::handshake;
      return advance_handshake();
    }
    case 'N':
      if (requires_tls(mode)) return finish("server does not support SSL, but SSL was required");
      phase_ = Phase::login;
      output_ = login_.startup_message();
      if (!flush()) return;
      return watch();
    case 'E':
      // libpq 15.10 and later (CVE-2024-10977): the server has not proved who it is yet, so its
      // words are neither read nor repeated, whatever sslmode.
      return finish("server sent an error response during SSL exchange");
    default:
      return finish(std::string("received invalid response to SSL negotiation: ") + answer);
  }
}

void PassthroughConnect::advance_handshake() {
  const net::TlsChannel::Io io = tls_->handshake();
  if (io.status != net::TlsChannel::Status::done) {
    if (io.status == net::TlsChannel::Status::want_read || io.status == net::TlsChannel::Status::want_write) {
      tls_wants_write_ = io.status == net::TlsChannel::Status::want_write;
      return watch();
    }
    const std::string reason = io.status == net::TlsChannel::Status::closed
                                   ? "SSL SYSCALL error: EOF detected"
                                   : "SSL error: " + tls_->failure();
    // libpq's prefer: a TLS setup that failed is tried again without TLS, on a new connection.
    if (!requires_tls(context_->settings().mode) && !retried_in_plain_text_) {
      retried_in_plain_text_ = true;
      tls_.reset();
      close_poll();
      if (auto problem = open(/*try_tls=*/false)) return finish(*problem);
      return;
    }
    return finish(reason);
  }
  tls_wants_write_ = false;
  X509* certificate = tls_->peer_certificate();
  if (certificate == nullptr) return finish("certificate could not be obtained: no SSL error reported");
  if (context_->settings().mode == config::SslMode::verify_full) {
    if (auto mismatch = certificate_name_mismatch(certificate, address_.host_name)) return finish(*mismatch);
  }
  login_.use_tls(config::tls_server_end_point(certificate));
  phase_ = Phase::login;
  output_ = login_.startup_message();
  if (!flush()) return;
  watch();
}

// Through TLS, what OpenSSL has decrypted already is read too: no poll event would announce it.
void PassthroughConnect::read_replies() {
  std::array<std::uint8_t, 8192> buffer{};
  for (;;) {
    std::size_t n = 0;
    if (tls_) {
      const net::TlsChannel::Io io = tls_->read(buffer.data(), buffer.size());
      if (io.status == net::TlsChannel::Status::want_read ||
          io.status == net::TlsChannel::Status::want_write) {
        tls_wants_write_ = io.status == net::TlsChannel::Status::want_write;
        return watch();
      }
      if (io.status == net::TlsChannel::Status::closed)
        return finish("server closed the connection unexpectedly during login");
      if (io.status == net::TlsChannel::Status::failed) return finish("SSL error: " + tls_->failure());
      n = io.bytes;
    } else {
      const ssize_t got = ::recv(poll_->fd, buffer.data(), buffer.size(), 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) return watch();
      if (got < 0) return finish("could not receive data from server: " + errno_text(errno));
      if (got == 0) return finish("server closed the connection unexpectedly during login");
      n = static_cast<std::size_t>(got);
    }
    std::string answer;
    const auto status = login_.on_bytes(protocol::Bytes(buffer.data(), n), answer);
    if (status == ServerLogin::Status::failed) return finish(login_.failure());
    if (status == ServerLogin::Status::done) return finish("");
    output_ += answer;
    if (!flush()) return;
    if (!tls_) return watch();  // the kernel's poll announces the rest
  }
}

void PassthroughConnect::watch() {
  const bool writable = !output_.empty() || tls_wants_write_;
  uv_poll_start(&poll_->handle, UV_READABLE | (writable ? UV_WRITABLE : 0), &PassthroughConnect::on_poll);
}

void PassthroughConnect::finish(const std::string& failure) {
  if (poll_ != nullptr) uv_poll_stop(&poll_->handle);  // none when the plain-text retry could not open one
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(failure);  // may destroy this connect
}

}  // namespace sluice::pool
