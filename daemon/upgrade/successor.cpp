#include "daemon/upgrade/successor.h"

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "common/log.h"
#include "daemon/upgrade/descriptor_passing.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX declares it nowhere

namespace sluice::daemon::upgrade {
namespace {

// The descriptor the new process finds the handover channel on (--upgrade-fd).
constexpr int kChannelFd = 3;

// The new process takes over the watchdog: WATCHDOG_PID names this one, and would make it ignore
// WATCHDOG_USEC (sd_watchdog_enabled). Everything else (NOTIFY_SOCKET among it) is inherited.
std::vector<std::string> successor_environment() {
  std::vector<std::string> variables;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "WATCHDOG_PID=", 13) != 0) variables.emplace_back(*entry);
  }
  return variables;
}

std::string exit_text(std::int64_t status, int signal) {
  if (signal != 0)
    return std::string("was killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exited with status " + std::to_string(status);
}

}  // namespace

std::string running_executable() {
  std::string path(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size() - 1);
  if (n <= 0) return "sluiced";
  path.resize(static_cast<std::size_t>(n));
  return path;
}

Successor::Successor(Events events, std::vector<HandedOverSocket> sockets,
                     std::chrono::milliseconds ready_timeout)
    : events_(std::move(events)), sockets_(std::move(sockets)), ready_timeout_(ready_timeout) {}

Result<std::unique_ptr<Successor>> Successor::launch(uv_loop_t* loop, const SuccessorLaunch& launch,
                                                     std::vector<HandedOverSocket> sockets, Events events) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
    return fail(std::string("socketpair: ") + std::strerror(errno));
  }
  std::unique_ptr<Successor> successor(
      new Successor(std::move(events), std::move(sockets), launch.ready_timeout));

  std::string fd_text = std::to_string(kChannelFd);
  std::vector<char*> args = {const_cast<char*>(launch.binary.c_str()),
                             const_cast<char*>("-c"),
                             const_cast<char*>(launch.config_path.c_str()),
                             const_cast<char*>("--upgrade-fd"),
                             fd_text.data(),
                             nullptr};
  std::vector<std::string> environment = successor_environment();
  std::vector<char*> env;
  env.reserve(environment.size() + 1);
  for (auto& variable : environment) env.push_back(variable.data());
  env.push_back(nullptr);
  uv_stdio_container_t stdio[kChannelFd + 1];
  for (int fd = 0; fd < kChannelFd; ++fd) {
    stdio[fd].flags = UV_INHERIT_FD;
    stdio[fd].data.fd = fd;
  }
  stdio[kChannelFd].flags = UV_INHERIT_FD;
  stdio[kChannelFd].data.fd = pair[1];
  uv_process_options_t options{};
  options.file = launch.binary.c_str();
  options.args = args.data();
  options.env = env.data();
  options.stdio = stdio;
  options.stdio_count = kChannelFd + 1;
  // Its own session: a terminal's Ctrl-C for this process must not reach its successor.
  options.flags = UV_PROCESS_DETACHED;
  options.exit_cb = [](uv_process_t* process, std::int64_t status, int signal) {
    if (auto* self = static_cast<Successor*>(process->data)) self->on_exit(status, signal);
  };
  successor->process_ = new uv_process_t{};
  successor->process_->data = successor.get();
  const int rc = uv_spawn(loop, successor->process_, &options);
  ::close(pair[1]);
  if (rc != 0) {
    ::close(pair[0]);
    uv_close(reinterpret_cast<uv_handle_t*>(successor->process_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_process_t*>(handle); });
    successor->process_ = nullptr;
    successor->state_ = State::finished;
    return fail("cannot start " + launch.binary + ": " + uv_strerror(rc));
  }
  successor->pid_ = successor->process_->pid;
  Successor* raw = successor.get();
  successor->link_ = std::make_unique<HandoverLink>(
      loop, pair[0],
      [raw](const nlohmann::json& message, std::vector<int>& /*descriptors*/) { raw->on_message(message); },
      [raw](const std::string& reason, bool broken) { raw->on_channel_closed(reason, broken); });
  successor->link_->on_undelivered([raw](std::uint64_t tag) {
    if (raw->events_.undelivered) raw->events_.undelivered(tag);
  });
  successor->deadline_ = std::make_unique<net::LoopTimer>(loop, [raw] {
    raw->give_up("did not report ready within " + std::to_string(raw->ready_timeout_.count()) + " ms");
  });
  successor->deadline_->start(launch.ready_timeout);
  log::info("upgrade: started ", launch.binary, " (pid ", successor->pid_, ")");
  return successor;
}

Successor::~Successor() {
  if (state_ == State::starting || state_ == State::failed) {
    if (process_ != nullptr && !exited_) uv_process_kill(process_, SIGKILL);
  }
  link_.reset();
  if (process_ != nullptr) {
    process_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(process_),
             [](uv_handle_t* closed) { delete reinterpret_cast<uv_process_t*>(closed); });
  }
}

void Successor::on_message(const nlohmann::json& message) {
  const std::string type = message_type(message);
  if (state_ == State::serving) {
    if (events_.message) events_.message(message);
    return;
  }
  if (state_ != State::starting) return;
  if (type == "failed") {
    return give_up("refused to start: " + message.value("reason", std::string("no reason given")));
  }
  if (type == "hello") {
    const int version = message.value("version", 0);
    if (version != kProtocolVersion) {
      return give_up("speaks handover protocol version " + std::to_string(version) +
                     ", this sluiced speaks " + std::to_string(kProtocolVersion));
    }
    nlohmann::json names = nlohmann::json::array();
    std::vector<int> fds;
    for (const auto& socket : sockets_) {
      names.push_back(socket.key);
      fds.push_back(socket.fd);
    }
    auto sent =
        send_message(link_->fd(), {{"type", "listeners"}, {"names", names}, {"pid", ::getpid()}}, fds);
    if (!sent) give_up(sent.error());
    return;
  }
  if (type == "ready") {
    // The last moment to back out: once "go" is sent, the new process serves and this one stops accepting.
    if (!link_->send({{"type", "go"}})) return give_up("the handover channel broke before go");
    state_ = State::serving;
    deadline_->stop();
    sockets_.clear();
    log::info("upgrade: pid ", pid_, " is ready and accepts new connections");
    if (events_.serving) events_.serving(pid_);
    return;
  }
  give_up("sent an unexpected handover message '" + type + "'");
}

void Successor::on_channel_closed(const std::string& reason, bool broken) {
  if (state_ == State::serving) {
    log::info("upgrade: the channel to pid ", pid_, " closed: ", reason);
    if (events_.lost) events_.lost();
    return;
  }
  if (broken) return give_up("broke the handover protocol: " + reason);
  // Its exit status says more; the deadline covers a process that closes the channel and lives on.
  if (failure_.empty()) failure_ = "closed the handover channel (" + reason + ")";
}

void Successor::abort(const std::string& reason) {
  if (state_ == State::starting) give_up(reason);
}

void Successor::give_up(const std::string& reason) {
  if (state_ != State::starting) return;
  state_ = State::failed;
  failure_ = reason;
  deadline_->stop();
  link_->shut();
  if (exited_) return on_exit(0, 0);
  uv_process_kill(process_, SIGKILL);  // reaped in on_exit, which reports the failure
}

void Successor::on_exit(std::int64_t status, int signal) {
  const bool first = !exited_;
  exited_ = true;
  if (state_ == State::serving) {
    if (first) log::error("upgrade: the new process (pid ", pid_, ") ", exit_text(status, signal));
    return;
  }
  if (state_ == State::starting) {
    state_ = State::failed;
    deadline_->stop();
    link_->shut();
    const std::string how = exit_text(status, signal) + " before reporting ready";
    failure_ = failure_.empty() || failure_.starts_with("closed the handover channel") ? how : failure_;
  }
  if (state_ != State::failed) return;
  state_ = State::finished;
  log::warning("upgrade: pid ", pid_, " will not serve: ", failure_, "; this process serves on");
  if (events_.failed) events_.failed(failure_);
}

bool Successor::send(const nlohmann::json& message, std::vector<int> descriptors, std::uint64_t tag) {
  if (state_ != State::serving) {
    for (const int fd : descriptors) ::close(fd);
    return false;
  }
  return link_->send(message, std::move(descriptors), tag);
}

}  // namespace sluice::daemon::upgrade
