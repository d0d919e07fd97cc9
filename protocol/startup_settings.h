// A client's session settings from its startup packet: every parameter but
// user, database and replication, and the settings in `options` (`-c name=value`,
// `--name=value`, with PostgreSQL's backslash escapes), in PostgreSQL's order of
// precedence: options first, the packet's own parameters over them. Pure.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "protocol/startup.h"

namespace sluice::protocol {

// Sorted by name, names folded to lower case (PostgreSQL's setting names are
// case-insensitive), one value per name: the one PostgreSQL would apply.
using StartupSettings = std::vector<std::pair<std::string, std::string>>;

Result<StartupSettings, ProtocolError> startup_settings(const StartupPacket& packet);

// `options` for libpq: `-c name=value` per setting, spaces and backslashes escaped.
std::string options_string(const StartupSettings& settings);

}  // namespace sluice::protocol
