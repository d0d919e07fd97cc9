// The JSON answers of the control socket's read-only commands, built from
// the daemon's live state (shapes documented in README.md).
#pragma once

#include <nlohmann/json.hpp>

namespace sluice::daemon {

class Daemon;

nlohmann::json status_report(const Daemon& daemon);
nlohmann::json pools_report(const Daemon& daemon);
nlohmann::json clients_report(const Daemon& daemon);
nlohmann::json servers_report(const Daemon& daemon);
nlohmann::json teardown_report(const Daemon& daemon);

}  // namespace sluice::daemon
