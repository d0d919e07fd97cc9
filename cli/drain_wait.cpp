#include "cli/drain_wait.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/exit_codes.h"
#include "cli/tables.h"
#include "cli/views.h"

namespace sluice::cli {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kPollInterval = 200ms;
constexpr auto kPlainLineInterval = 1s;  // not a terminal: at most one line a second

long long number_or(const Json& status, std::initializer_list<std::string_view> path, long long fallback) {
  const Json* value = find_path(status, path);
  return value != nullptr && value->is_number() ? value->get<long long>() : fallback;
}

// Progress on a terminal is one line redrawn in place; elsewhere (a log, a
// pipe) it is plain lines, rate-limited.
class Progress {
 public:
  explicit Progress(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {}

  void show(const std::string& line) {
    const auto now = Clock::now();
    if (terminal_) {
      out_ << "\r\x1b[K" << line << std::flush;
      drawn_ = true;
    } else if (!last_plain_ || now - *last_plain_ >= kPlainLineInterval) {
      out_ << line << std::endl;
      last_plain_ = now;
    }
  }
  // Ends the live line so later output starts on a fresh one.
  void finish() {
    if (drawn_) out_ << '\n' << std::flush;
    drawn_ = false;
  }

 private:
  std::ostream& out_;
  bool terminal_;
  bool drawn_ = false;
  std::optional<Clock::time_point> last_plain_;
};

int drained(const Json& status, std::ostream& out, Progress& progress) {
  progress.finish();
  const long long forced = number_or(status, {"drain", "forced"}, 0);
  out << "drained after " << seconds_cell(find_path(status, {"drain", "elapsed_s"}));
  if (forced > 0) {
    out << "; " << forced << " scope(s) were cancelled and rolled back at the deadline\n";
    return kExitDrainForced;
  }
  out << "; no scopes were forced\n";
  return kExitOk;
}

// The daemon went away before we saw `drained`: judge by the last status.
int vanished(const std::optional<Json>& last, Clock::time_point last_at, std::ostream& out,
             Progress& progress) {
  progress.finish();
  if (!last) {
    out << "daemon exited; drain finished\n";
    return kExitOk;
  }
  const long long forced = number_or(*last, {"drain", "forced"}, 0);
  const long long remaining = number_or(*last, {"drain", "scopes_remaining"}, 0);
  const Json* deadline_in = find_path(*last, {"drain", "deadline_in_s"});
  const bool past_deadline =
      deadline_in != nullptr && deadline_in->is_number() &&
      std::chrono::duration<double>(Clock::now() - last_at).count() >= deadline_in->get<double>();
  if (forced > 0 || (past_deadline && remaining > 0)) {
    out << "daemon exited after the drain deadline; "
        << (forced > 0 ? std::to_string(forced) + " scope(s) were forced"
                       : std::to_string(remaining) + " scope(s) were still active and presumably forced")
        << '\n';
    return kExitDrainForced;
  }
  out << "daemon exited after draining\n";
  return kExitOk;
}

}  // namespace

int wait_for_drain(ControlClient client, const DrainWaitOptions& options) {
  std::ostream& progress_out = options.json ? std::cerr : std::cout;
  const int progress_fd = options.json ? STDERR_FILENO : STDOUT_FILENO;
  Progress progress(progress_out, ::isatty(progress_fd) == 1);
  std::optional<ControlClient> connection(std::move(client));
  std::optional<Json> last;
  Clock::time_point last_at = Clock::now();

  bool fresh = false;  // the connection was just (re)made
  for (;;) {
    if (!connection) {
      auto reconnected = ControlClient::connect(options.socket_path);
      if (!reconnected) {
        if (reconnected.error().daemon_gone) return vanished(last, last_at, progress_out, progress);
        progress.finish();
        std::cerr << "sluicectl: " << reconnected.error().message << '\n';
        return reconnected.error().exit_code;
      }
      connection.emplace(std::move(*reconnected));
      fresh = true;
    }
    auto response = connection->request(Json{{"cmd", "status"}});
    if (!response) {
      if (response.error().daemon_gone) {
        // Closed on us: one reconnection tells "exited" from "dropped us".
        if (fresh) return vanished(last, last_at, progress_out, progress);
        connection.reset();
        continue;
      }
      progress.finish();
      std::cerr << "sluicectl: " << response.error().message << '\n';
      return response.error().exit_code;
    }
    if (const auto error = answer_error(*response)) {
      progress.finish();
      std::cerr << "sluicectl: " << error->message << '\n';
      return error->exit_code;
    }
    fresh = false;
    const Json& status = response->body;
    last = status;
    last_at = Clock::now();
    const Json* state = find_path(status, {"state"});
    const std::string state_name = state != nullptr && state->is_string() ? state->get<std::string>() : "";
    if (state_name == "drained") {
      if (options.json) std::cout << response->line << '\n';
      return drained(status, progress_out, progress);
    }
    if (state_name != "draining") {
      progress.finish();
      std::cerr << "sluicectl: the drain is no longer in progress (state: " << text_cell(state) << ")\n";
      return kExitError;
    }
    progress.show(drain_progress(status));
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace sluice::cli
