// The old process's side of a live upgrade: starts the new sluiced with the
// handover channel as its descriptor 3, hands it the listening sockets, and
// waits (never blocking the loop) for it to report ready before a deadline.
// Until then nothing changes here: a new process that exits, says it failed,
// speaks another protocol or misses the deadline is killed and reaped, and this
// one serves on as if nothing happened. Once ready, the channel stays open for
// cancel requests the new process forwards and the drain progress sent back.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/result.h"
#include "daemon/upgrade/handover_link.h"
#include "net/loop_timer.h"

namespace sluice::daemon::upgrade {

// How long a new process has to report ready unless the request says otherwise.
inline constexpr std::chrono::milliseconds kDefaultReadyTimeout{30000};

// This process's binary as it was started (/proc/self/exe, read at start-up: a package
// upgrade later replaces the file at that path, which is what `upgrade` then runs).
std::string running_executable();

struct SuccessorLaunch {
  std::string binary;       // the sluiced to start
  std::string config_path;  // its -c
  std::chrono::milliseconds ready_timeout = kDefaultReadyTimeout;
};

struct HandedOverSocket {
  std::string key;  // Listener::key()
  int fd;           // stays this process's: a copy travels
};

class Successor {
 public:
  enum class State {
    starting,  // spawned, handshake under way
    serving,   // reported ready and was told to go: it accepts every new connection
    failed,    // gave up; waiting until the process is reaped
    finished,  // failed and reaped: nothing of it is left
  };
  struct Events {
    // It serves now; this process must stop accepting (the sockets stay open in the new one).
    std::function<void(pid_t pid)> serving;
    // It will not serve, and its process is gone (killed if need be, and reaped).
    std::function<void(const std::string& reason)> failed;
    // A message after it serves (a forwarded cancel request, what became of a moved client).
    std::function<void(const nlohmann::json& message)> message;
    // A message sent with this tag was refused by the kernel for its descriptors' sake and dropped
    // (HandoverLink::OnUndelivered); the channel goes on.
    std::function<void(std::uint64_t tag)> undelivered;
    // After it served, the channel closed: it is gone, and takes no more clients.
    std::function<void()> lost;
  };

  static Result<std::unique_ptr<Successor>> launch(uv_loop_t* loop, const SuccessorLaunch& launch,
                                                   std::vector<HandedOverSocket> sockets, Events events);
  // Kills a process that does not serve yet; one that serves is left running.
  ~Successor();
  Successor(const Successor&) = delete;
  Successor& operator=(const Successor&) = delete;

  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // Gives up before it serves (a drain started here): killed, then `failed` once reaped.
  void abort(const std::string& reason);
  // To the new process, once it serves, with `descriptors` (closed here once sent); false when it
  // cannot be sent (the descriptors are closed then too). `tag`: for `undelivered`.
  bool send(const nlohmann::json& message, std::vector<int> descriptors = {}, std::uint64_t tag = 0);
  // Everything sent has reached the kernel: this process may exit without losing a message.
  [[nodiscard]] bool flushed() const { return !link_ || !link_->open() || link_->flushed(); }
  // Called whenever what was queued has been sent.
  void on_flushed(std::function<void()> call) {
    if (link_) link_->on_flushed(std::move(call));
  }

 private:
  Successor(Events events, std::vector<HandedOverSocket> sockets, std::chrono::milliseconds ready_timeout);
  void on_message(const nlohmann::json& message);
  void on_channel_closed(const std::string& reason, bool broken);
  void on_exit(std::int64_t status, int signal);
  void give_up(const std::string& reason);

  Events events_;
  std::vector<HandedOverSocket> sockets_;
  std::chrono::milliseconds ready_timeout_;
  State state_ = State::starting;
  pid_t pid_ = 0;
  std::string failure_;              // the first reason it will not serve
  uv_process_t* process_ = nullptr;  // heap: freed in its close callback, after the exit is seen
  std::unique_ptr<net::LoopTimer> deadline_;
  bool exited_ = false;
  std::unique_ptr<HandoverLink> link_;
};

}  // namespace sluice::daemon::upgrade
