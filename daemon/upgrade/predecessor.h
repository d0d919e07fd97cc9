// The new process's side of a live upgrade (sluiced --upgrade-fd N, started by
// the running sluiced): during its own start, before it serves anyone, it may
// block on the channel — hello, the listening sockets, ready, go. Once it serves,
// the channel runs on the loop: it forwards the cancel requests for clients still
// on the old process, and keeps the old process's drain progress for `status`.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/result.h"
#include "daemon/upgrade/handover_link.h"
#include "daemon/upgrade/handover_protocol.h"

namespace sluice::daemon::upgrade {

// How long the new process waits for each answer of the old one (which enforces its own deadline).
inline constexpr std::chrono::seconds kAnswerTimeout{60};

// Tells the old process why this one will not serve; best effort, then the caller exits.
void report_startup_failure(int channel_fd, const std::string& reason);

class Predecessor {
 public:
  // Says hello and takes the listening sockets, which Listener::open_* then use instead of binding.
  static Result<std::unique_ptr<Predecessor>> connect(int channel_fd);
  ~Predecessor();
  Predecessor(const Predecessor&) = delete;
  Predecessor& operator=(const Predecessor&) = delete;

  // Reports ready and waits for go: after it, this process serves and the old one no longer accepts.
  // An error means the old process backed out: do not serve.
  Result<bool> report_ready();
  void report_failure(const std::string& reason) { report_startup_failure(fd_, reason); }

  // A client the old process handed over: its state (frontend/moved_client.h) and its socket (then
  // its server's, if it brought one), which the callee owns; `move` names it in report_move().
  using ClientArrived =
      std::function<void(const nlohmann::json& state, std::vector<int> descriptors, std::uint64_t move)>;
  // From the first loop turn on: the channel on `loop`; `gone` once the old process has exited.
  void attach(uv_loop_t* loop, std::function<void()> gone, ClientArrived client_arrived);
  // Tells the old process what became of a moved client: adopted (served here, or ended with this
  // process's error), or declined (the old process drains it). Its copy of the socket waits for it.
  void report_move(std::uint64_t move, bool adopted);
  // A cancel request whose key this process did not give out: maybe the old one did.
  void forward_cancel(std::uint32_t process_id, std::uint32_t secret);
  [[nodiscard]] pid_t pid() const { return pid_; }
  // For `status`: the old process and its drain, as it last reported.
  [[nodiscard]] nlohmann::json report() const;

 private:
  Predecessor(int fd, pid_t pid) : fd_(fd), pid_(pid) {}

  int fd_;
  pid_t pid_;
  MessageReader reader_;
  std::deque<int> early_descriptors_;  // came with "go": the first clients' sockets
  std::unique_ptr<HandoverLink> link_;
  nlohmann::json progress_ = nlohmann::json::object();
};

}  // namespace sluice::daemon::upgrade
