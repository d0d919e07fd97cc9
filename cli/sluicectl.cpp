// sluicectl: talks to sluiced's control socket (DESIGN.md §4, §7).
//   sluicectl [-s SOCKET] [--json] status|pools|clients|servers|teardown|
//             drain [--timeout SECONDS] [--wait]|pause|resume|reload|shutdown|
//             upgrade [--binary PATH] [--timeout SECONDS]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "cli/control_client.h"
#include "cli/drain_wait.h"
#include "cli/exit_codes.h"
#include "cli/views.h"
#include "common/version.h"

namespace sluice::cli {
namespace {

constexpr const char* kDefaultSocket = "/run/sluice/control.sock";
constexpr double kMaxDrainTimeoutS = 365.0 * 24 * 3600;  // the daemon refuses more

struct Command {
  const char* name;
  const char* description;
};

constexpr Command kCommands[] = {
    {"status", "daemon state, client and server counts, drain progress, loop lag"},
    {"pools", "one line per pool: clients, servers, longest wait"},
    {"clients", "one line per client connection"},
    {"servers", "one line per server connection"},
    {"teardown", "release latency per outcome against the teardown SLA, recent violations"},
    {"drain", "stop accepting clients, finish scopes in flight, force the rest at the deadline"},
    {"pause", "stop handing out server connections; clients wait"},
    {"resume", "undo pause"},
    {"reload", "re-read the configuration file"},
    {"shutdown", "stop now: roll back whatever is in flight and exit"},
    {"upgrade", "live upgrade: start the installed sluiced, hand it the listening sockets, drain this one"},
};

constexpr double kDefaultUpgradeTimeoutS = 30;  // the daemon's default too

// -s, else $SLUICE_CONTROL, else the packaged default.
std::string socket_path(const std::string& from_option) {
  if (!from_option.empty()) return from_option;
  if (const char* from_environment = std::getenv("SLUICE_CONTROL");
      from_environment != nullptr && *from_environment != '\0') {
    return from_environment;
  }
  return kDefaultSocket;
}

int report(const ClientError& error) {
  std::cerr << "sluicectl: " << error.message << '\n';
  return error.exit_code;
}

bool render(const std::string& command, const nlohmann::json& answer) {
  if (command == "status") return print_status(answer, std::cout);
  if (command == "pools") return print_pools(answer, std::cout);
  if (command == "clients") return print_clients(answer, std::cout);
  if (command == "servers") return print_servers(answer, std::cout);
  if (command == "teardown") return print_teardown(answer, std::cout);
  return print_acknowledgement(command, answer, std::cout);
}

struct Invocation {
  std::string socket;
  bool json = false;
  std::string command;
  std::optional<double> drain_timeout_s;
  bool drain_wait = false;
  std::string upgrade_binary;
  std::optional<double> upgrade_timeout_s;
};

int run(const Invocation& invocation) {
  const std::string path = socket_path(invocation.socket);
  // upgrade answers once the new process has reported ready or failed: wait that long, and more.
  const auto answer_timeout = invocation.command == "upgrade"
                                  ? ControlClient::kDefaultTimeout +
                                        std::chrono::seconds(std::lround(
                                            invocation.upgrade_timeout_s.value_or(kDefaultUpgradeTimeoutS)))
                                  : ControlClient::kDefaultTimeout;
  auto client = ControlClient::connect(path, answer_timeout);
  if (!client) return report(client.error());

  nlohmann::json request{{"cmd", invocation.command}};
  if (invocation.drain_timeout_s) request["timeout_s"] = *invocation.drain_timeout_s;
  if (invocation.upgrade_timeout_s) request["timeout_s"] = *invocation.upgrade_timeout_s;
  if (!invocation.upgrade_binary.empty()) request["binary"] = invocation.upgrade_binary;
  auto response = client->request(request);
  if (!response) return report(response.error());
  if (invocation.json) std::cout << response->line << '\n';
  if (const auto error = answer_error(*response)) return report(*error);
  if (!invocation.json && !render(invocation.command, response->body)) {
    std::cerr << "sluicectl: unexpected answer from the daemon: " << response->line.substr(0, 200) << '\n';
    return kExitError;
  }
  if (invocation.command == "drain" && invocation.drain_wait) {
    std::cout << std::flush;
    return wait_for_drain(std::move(*client), DrainWaitOptions{path, invocation.json});
  }
  return kExitOk;
}

int sluicectl(int argc, char** argv) {
  CLI::App app{"Control a running sluiced through its control socket.", "sluicectl"};
  Invocation invocation;
  app.add_option("-s,--socket", invocation.socket,
                 std::string("control socket (default: $SLUICE_CONTROL, then ") + kDefaultSocket + ")");
  app.add_flag("--json", invocation.json, "print the daemon's JSON answer as is");
  app.set_version_flag("--version", std::string("sluicectl ") + sluice::kVersion);
  app.require_subcommand(1);
  app.fallthrough();  // -s and --json also after the command

  double timeout_s = 0;
  double upgrade_timeout_s = 0;
  for (const auto& [name, description] : kCommands) {
    CLI::App* command = app.add_subcommand(name, description);
    command->callback([&invocation, name = std::string(name)] { invocation.command = name; });
    if (std::string_view(name) == "drain") {
      command
          ->add_option("--timeout", timeout_s,
                       "seconds until scopes still in flight are cancelled "
                       "(default: drain.timeout_s)")
          ->check(CLI::Validator(
              [](const std::string& text) -> std::string {
                try {
                  const double seconds = std::stod(text);
                  if (seconds >= 0 && seconds <= kMaxDrainTimeoutS) return "";
                } catch (const std::exception&) {
                }
                return "expected seconds from 0 to " + std::to_string(static_cast<long>(kMaxDrainTimeoutS));
              },
              "SECONDS"));
      command->add_flag("--wait", invocation.drain_wait,
                        "wait until drained, showing progress; exit 5 if scopes had to be forced");
    }
    if (std::string_view(name) == "upgrade") {
      command->add_option(
          "--binary", invocation.upgrade_binary,
          "the sluiced to start (default: the binary installed where the running one was started from)");
      command
          ->add_option("--timeout", upgrade_timeout_s,
                       "seconds the new process has to report ready (default: 30)")
          ->check(CLI::Range(0.0, 3600.0));
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (const CLI::App* drain = app.get_subcommand("drain"); drain->count("--timeout") > 0) {
    invocation.drain_timeout_s = timeout_s;
  }
  if (const CLI::App* upgrade = app.get_subcommand("upgrade"); upgrade->count("--timeout") > 0) {
    invocation.upgrade_timeout_s = upgrade_timeout_s;
  }
  return run(invocation);
}

}  // namespace
}  // namespace sluice::cli

int main(int argc, char** argv) {
  try {
    return sluice::cli::sluicectl(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "sluicectl: " << error.what() << '\n';
  } catch (...) {
    std::cerr << "sluicectl: unexpected error\n";
  }
  return sluice::cli::kExitError;
}
