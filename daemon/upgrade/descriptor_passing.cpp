#include "daemon/upgrade/descriptor_passing.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace sluice::daemon::upgrade {
namespace {

void close_all(std::vector<int>& descriptors) {
  for (const int fd : descriptors) ::close(fd);
  descriptors.clear();
}

// The descriptors in a received control message.
void take_descriptors(msghdr& header, std::vector<int>& into) {
  for (cmsghdr* control = CMSG_FIRSTHDR(&header); control != nullptr;
       control = CMSG_NXTHDR(&header, control)) {
    if (control->cmsg_level != SOL_SOCKET || control->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (control->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(control) + i * sizeof(int), sizeof(int));
      into.push_back(fd);
    }
  }
}

int socket_option(int fd, int name) {
  int value = -1;
  socklen_t size = sizeof value;
  return ::getsockopt(fd, SOL_SOCKET, name, &value, &size) == 0 ? value : -1;
}

}  // namespace

std::optional<std::string> not_a_connection(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return "not an open descriptor";
  if (S_ISFIFO(info.st_mode)) return "a pipe";
  if (!S_ISSOCK(info.st_mode)) return S_ISREG(info.st_mode) ? "a file" : "a device or directory";
  if (socket_option(fd, SO_TYPE) != SOCK_STREAM) return "a socket but not a stream socket";
  if (socket_option(fd, SO_ACCEPTCONN) != 0) return "a listening socket";
  const int family = socket_option(fd, SO_DOMAIN);
  if (family != AF_UNIX && family != AF_INET && family != AF_INET6) return "a socket of another family";
  return std::nullopt;
}

ssize_t send_with_descriptors(int socket, std::string_view bytes, std::span<const int> descriptors) {
  if (descriptors.size() > kMaxDescriptors) return -EINVAL;
  iovec data{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr header{};
  header.msg_iov = &data;
  header.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxDescriptors)> control{};
  if (!descriptors.empty()) {
    header.msg_control = control.data();
    header.msg_controllen = CMSG_SPACE(sizeof(int) * descriptors.size());
    cmsghdr* rights = CMSG_FIRSTHDR(&header);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof(int) * descriptors.size());
    std::memcpy(CMSG_DATA(rights), descriptors.data(), sizeof(int) * descriptors.size());
  }
  ssize_t sent = -1;
  do {
    sent = ::sendmsg(socket, &header, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (sent < 0 && errno == EINTR);
  return sent < 0 ? -errno : sent;
}

ssize_t receive_with_descriptors(int socket, std::span<char> buffer, std::vector<int>& into) {
  iovec data{buffer.data(), buffer.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxDescriptors)> control{};
  msghdr header{};
  header.msg_iov = &data;
  header.msg_iovlen = 1;
  header.msg_control = control.data();
  header.msg_controllen = control.size();
  ssize_t n = -1;
  do {
    n = ::recvmsg(socket, &header, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  take_descriptors(header, into);
  if ((header.msg_flags & MSG_CTRUNC) != 0) return -EMSGSIZE;
  return n;
}

Result<bool> send_message(int socket, const nlohmann::json& message, std::span<const int> descriptors) {
  if (descriptors.size() > kMaxDescriptors) return fail("too many descriptors for one handover message");
  const std::string frame = encode_message(message);
  const ssize_t sent = send_with_descriptors(socket, frame, descriptors);
  if (sent < 0) return fail(std::string("handover channel: ") + std::strerror(static_cast<int>(-sent)));
  if (static_cast<std::size_t>(sent) != frame.size())
    return fail("handover channel: message sent only in part");
  return true;
}

Result<Received> receive_message(int socket, MessageReader& reader,
                                 std::chrono::steady_clock::time_point deadline) {
  Received received;
  for (;;) {
    auto next = reader.next();
    if (!next) {
      close_all(received.descriptors);
      return fail(next.error());
    }
    if (*next) {
      received.message = std::move(**next);
      return received;
    }
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      close_all(received.descriptors);
      return fail("handover channel: no message in time");
    }
    pollfd watched{socket, POLLIN, 0};
    if (::poll(&watched, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      close_all(received.descriptors);
      return fail(std::string("handover channel: ") + std::strerror(errno));
    }
    std::array<char, 4096> buffer;
    const ssize_t n = receive_with_descriptors(socket, buffer, received.descriptors);
    if (n == -EAGAIN || n == -EINTR) continue;
    if (n < 0) {
      const std::string why = n == -EMSGSIZE ? "too many descriptors" : std::strerror(static_cast<int>(-n));
      close_all(received.descriptors);
      return fail("handover channel: " + why);
    }
    if (n == 0) {
      close_all(received.descriptors);
      return fail("handover channel: the old process closed it");
    }
    reader.append({buffer.data(), static_cast<std::size_t>(n)});
  }
}

}  // namespace sluice::daemon::upgrade
