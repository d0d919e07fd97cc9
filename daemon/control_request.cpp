#include "daemon/control_request.h"

#include <array>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

namespace sluice::daemon {
namespace {

using Json = nlohmann::json;

constexpr std::array kCommands = {
    std::pair{ControlCommand::status, "status"},     std::pair{ControlCommand::pools, "pools"},
    std::pair{ControlCommand::clients, "clients"},   std::pair{ControlCommand::servers, "servers"},
    std::pair{ControlCommand::teardown, "teardown"}, std::pair{ControlCommand::drain, "drain"},
    std::pair{ControlCommand::pause, "pause"},       std::pair{ControlCommand::resume, "resume"},
    std::pair{ControlCommand::reload, "reload"},     std::pair{ControlCommand::shutdown, "shutdown"},
    std::pair{ControlCommand::upgrade, "upgrade"},
};

// Names echoed back in errors are the client's bytes: keep them short.
constexpr std::size_t kMaxEchoed = 64;
// The parser's messages quote the input ("last read: ..."): keep them short too.
constexpr std::size_t kMaxParserMessage = 200;

std::string echoed(std::string_view text) {
  if (text.size() <= kMaxEchoed) return std::string(text);
  return std::string(text.substr(0, kMaxEchoed)) + "...";
}

std::string command_list() {
  std::string list;
  for (const auto& [command, name] : kCommands) {
    if (!list.empty()) list += ", ";
    list += name;
  }
  return list;
}

// The deepest bracket nesting outside string literals: a linear scan that
// cannot recurse, so a hostile line is refused before any parser sees it.
bool nesting_exceeds(std::string_view line, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : line) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

// "[json.exception.parse_error.101] parse error at ..." -> "parse error at ...".
std::string parser_message(const char* what) {
  std::string_view message(what);
  if (message.starts_with("[json.exception.")) {
    if (const auto end = message.find("] "); end != std::string_view::npos) message.remove_prefix(end + 2);
  }
  if (message.size() <= kMaxParserMessage) return std::string(message);
  return std::string(message.substr(0, kMaxParserMessage)) + "...";
}

Result<double> parse_timeout(const Json& value, const std::string& command) {
  const std::string argument = "argument 'timeout_s' of command '" + command + "'";
  if (!value.is_number()) {
    return fail(argument + " must be a non-negative number, got " + value.type_name());
  }
  const double seconds = value.get<double>();
  if (!std::isfinite(seconds) || seconds < 0) {
    return fail(argument + " must be a non-negative number, got " + value.dump());
  }
  if (seconds > kMaxDrainTimeoutS) {
    return fail(argument + " must be at most " + std::to_string(static_cast<long long>(kMaxDrainTimeoutS)) +
                " seconds, got " + value.dump());
  }
  return seconds;
}

}  // namespace

std::string command_name(ControlCommand command) {
  for (const auto& [candidate, name] : kCommands) {
    if (candidate == command) return name;
  }
  return "unknown";
}

Result<ControlRequest> parse_control_request(std::string_view line) {
  if (nesting_exceeds(line, kMaxControlNesting)) {
    return fail("malformed JSON: nested deeper than " + std::to_string(kMaxControlNesting) + " levels");
  }
  Json document;
  try {
    document = Json::parse(line.begin(), line.end());
  } catch (const Json::exception& error) {
    return fail("malformed JSON: " + parser_message(error.what()));
  } catch (const std::exception& error) {  // bad_alloc and the like: still an answer, not a crash
    return fail(std::string("malformed JSON: ") + error.what());
  }
  if (!document.is_object()) {
    return fail(std::string(R"(request must be a JSON object such as {"cmd": "status"}, got )") +
                document.type_name());
  }
  const auto cmd = document.find("cmd");
  if (cmd == document.end()) return fail("missing \"cmd\"; expected one of " + command_list());
  if (!cmd->is_string()) return fail(std::string("\"cmd\" must be a string, got ") + cmd->type_name());
  const auto& name = cmd->get_ref<const std::string&>();

  ControlRequest request;
  bool known = false;
  for (const auto& [command, candidate] : kCommands) {
    if (name == candidate) {
      request.command = command;
      known = true;
      break;
    }
  }
  if (!known) return fail("unknown command '" + echoed(name) + "'; expected one of " + command_list());

  for (const auto& [key, value] : document.items()) {
    if (key == "cmd") continue;
    const bool takes_timeout =
        request.command == ControlCommand::drain || request.command == ControlCommand::upgrade;
    if (takes_timeout && key == "timeout_s") {
      if (value.is_null()) continue;  // explicit "use the default"
      auto timeout = parse_timeout(value, name);
      if (!timeout) return fail(timeout.error());
      request.timeout_s = *timeout;
      continue;
    }
    if (request.command == ControlCommand::upgrade && key == "binary") {
      if (!value.is_string() || value.get_ref<const std::string&>().empty()) {
        return fail("argument 'binary' of command 'upgrade' must be a non-empty path");
      }
      request.binary = value.get<std::string>();
      continue;
    }
    std::string message = "unknown argument '" + echoed(key) + "' for command '" + name + "'";
    if (request.command == ControlCommand::drain) {
      message += " (expected timeout_s)";
    } else if (request.command == ControlCommand::upgrade) {
      message += " (expected binary, timeout_s)";
    } else {
      message += " (it takes none)";
    }
    return fail(message);
  }
  return request;
}

}  // namespace sluice::daemon
