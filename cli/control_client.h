// The client side of the control socket: one JSON object per line each way,
// over a blocking Unix socket with a receive timeout.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/result.h"

namespace sluice::cli {

// What went wrong, already as sluicectl's exit code and message.
struct ClientError {
  int exit_code;
  std::string message;
  bool daemon_gone = false;  // nobody listens, or the daemon closed on us mid-request
};

// NOLINTNEXTLINE(bugprone-exception-escape): json moves are noexcept; the check sees its asserts
struct Response {
  std::string line;     // verbatim, without the newline
  nlohmann::json body;  // parsed
};

class ControlClient {
 public:
  static constexpr std::chrono::seconds kDefaultTimeout{10};

  static Result<ControlClient, ClientError> connect(const std::string& socket_path,
                                                    std::chrono::seconds timeout = kDefaultTimeout);
  ~ControlClient();
  ControlClient(ControlClient&& other) noexcept;
  ControlClient& operator=(ControlClient&& other) noexcept;
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends one request and waits for its answer line. An {"error": ...} answer
  // is a Response, not a ClientError: see answer_error().
  Result<Response, ClientError> request(const nlohmann::json& request);

 private:
  ControlClient(int fd, std::string socket_path) : fd_(fd), socket_path_(std::move(socket_path)) {}
  [[nodiscard]] bool send_all(const std::string& bytes) const;
  Result<std::string, ClientError> read_line();

  int fd_ = -1;
  std::string socket_path_;
  std::string buffered_;  // bytes read past the last answer
};

// The daemon's {"error": ...} answer as a ClientError (exit 2, or 4 when it
// refused our credentials); nullopt for any other answer.
std::optional<ClientError> answer_error(const Response& response);

}  // namespace sluice::cli
