// Human-readable renderings of the daemon's answers (DESIGN.md §4); --json
// bypasses these. Each returns false when the answer lacks its main part.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

namespace sluice::cli {

bool print_status(const nlohmann::json& status, std::ostream& out);
bool print_pools(const nlohmann::json& answer, std::ostream& out);
bool print_clients(const nlohmann::json& answer, std::ostream& out);
bool print_servers(const nlohmann::json& answer, std::ostream& out);
bool print_teardown(const nlohmann::json& answer, std::ostream& out);
// drain, pause, resume, reload, shutdown: {"ok": true, "state": ...}.
bool print_acknowledgement(const std::string& command, const nlohmann::json& answer, std::ostream& out);

// One line of drain progress from a status answer.
std::string drain_progress(const nlohmann::json& status);

}  // namespace sluice::cli
