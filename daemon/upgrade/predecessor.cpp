#include "daemon/upgrade/predecessor.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "common/log.h"
#include "daemon/upgrade/descriptor_passing.h"
#include "daemon/upgrade/inherited_sockets.h"

namespace sluice::daemon::upgrade {
namespace {

std::chrono::steady_clock::time_point answer_deadline() {
  return std::chrono::steady_clock::now() + kAnswerTimeout;
}

}  // namespace

void report_startup_failure(int channel_fd, const std::string& reason) {
  if (auto sent = send_message(channel_fd, {{"type", "failed"}, {"reason", reason}}); !sent) {
    log::warning("upgrade: cannot tell the old process why: ", sent.error());
  }
}

Result<std::unique_ptr<Predecessor>> Predecessor::connect(int channel_fd) {
  // Its own descriptor from here on: nothing this process starts inherits it.
  if (::fcntl(channel_fd, F_SETFD, FD_CLOEXEC) != 0 ||
      ::fcntl(channel_fd, F_SETFL, ::fcntl(channel_fd, F_GETFL) | O_NONBLOCK) != 0) {
    return fail("--upgrade-fd " + std::to_string(channel_fd) + " is not an open descriptor");
  }
  if (auto sent =
          send_message(channel_fd, {{"type", "hello"}, {"version", kProtocolVersion}, {"pid", ::getpid()}});
      !sent) {
    return fail(sent.error());
  }
  MessageReader reader;
  auto received = receive_message(channel_fd, reader, answer_deadline());
  if (!received) return fail(received.error());
  const auto& message = received->message;
  const auto names = message.find("names");
  const bool well_formed =
      message_type(message) == "listeners" && names != message.end() && names->is_array() &&
      names->size() == received->descriptors.size() &&
      std::all_of(names->begin(), names->end(), [](const auto& name) { return name.is_string(); });
  if (!well_formed) {
    for (const int fd : received->descriptors) ::close(fd);
    return fail("the old process sent no usable listening sockets");
  }
  std::vector<std::pair<std::string, int>> sockets;
  for (std::size_t i = 0; i < names->size(); ++i)
    sockets.emplace_back((*names)[i].get<std::string>(), received->descriptors[i]);
  log::info("upgrade: took over ", sockets.size(), " listening sockets from pid ", message.value("pid", 0));
  offer_inherited_sockets(std::move(sockets));
  std::unique_ptr<Predecessor> predecessor(new Predecessor(channel_fd, message.value("pid", 0)));
  predecessor->reader_ = std::move(reader);
  return predecessor;
}

Predecessor::~Predecessor() {
  if (link_) return;
  ::close(fd_);
  for (const int fd : early_descriptors_) ::close(fd);
}

Result<bool> Predecessor::report_ready() {
  if (auto sent = send_message(fd_, {{"type", "ready"}, {"pid", ::getpid()}}); !sent)
    return fail(sent.error());
  auto received = receive_message(fd_, reader_, answer_deadline());
  if (!received) return fail(received.error());
  // The old process may hand over clients right after go, and the read may have caught their first
  // bytes and sockets: the link takes them over.
  early_descriptors_.assign(received->descriptors.begin(), received->descriptors.end());
  if (message_type(received->message) != "go")
    return fail("the old process answered ready with '" + message_type(received->message) + "'");
  return true;
}

void Predecessor::attach(uv_loop_t* loop, std::function<void()> gone, ClientArrived client_arrived) {
  link_ = std::make_unique<HandoverLink>(
      loop, fd_,
      [this, client_arrived = std::move(client_arrived)](const nlohmann::json& message,
                                                         std::vector<int>& descriptors) {
        const std::string type = message_type(message);
        if (type == "progress") {
          progress_ = message;
        } else if (type == "client") {
          const auto state = message.find("client");
          const auto move = message.find("move");
          const std::uint64_t number =
              move != message.end() && move->is_number_unsigned() ? move->get<std::uint64_t>() : 0;
          if (descriptors.empty() || state == message.end()) {
            log::warning("upgrade: a handed-over client without its socket or state: declined");
            return report_move(number, /*adopted=*/false);
          }
          client_arrived(*state, std::exchange(descriptors, {}), number);
        }
      },
      [this, gone = std::move(gone)](const std::string& reason, bool /*broken*/) {
        log::info("upgrade: the old process (pid ", pid_, ") is gone: ", reason);
        gone();
      },
      HandoverLink::Backlog{std::move(reader_), std::move(early_descriptors_)});
  early_descriptors_.clear();
  link_->process_backlog();
}

void Predecessor::report_move(std::uint64_t move, bool adopted) {
  if (link_ && move != 0) link_->send({{"type", "moved"}, {"move", move}, {"adopted", adopted}});
}

void Predecessor::forward_cancel(std::uint32_t process_id, std::uint32_t secret) {
  if (link_) link_->send({{"type", "cancel"}, {"process_id", process_id}, {"secret", secret}});
}

nlohmann::json Predecessor::report() const {
  nlohmann::json report{{"role", "successor"}, {"old_pid", pid_}};
  for (const char* key : {"state", "clients", "forced", "moved"}) {
    if (progress_.contains(key)) report["old_" + std::string(key)] = progress_[key];
  }
  return report;
}

}  // namespace sluice::daemon::upgrade
