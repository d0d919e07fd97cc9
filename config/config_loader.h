// Reads a JSON-with-comments config file into a validated Config. Errors name
// the offending key (as a dotted path) and the line it stands on.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "config/config.h"

namespace sluice::config {

// Parses and validates `text`; `source_name` (a path) prefixes error messages:
// "FILE:LINE: key 'databases.app.pool_size': expected an integer, got a string".
Result<Config> parse_config(std::string_view text, const std::string& source_name);

// Reads the file, then parse_config. Blocking: call it off the loop on reload.
Result<Config> load_config_file(const std::string& path);

}  // namespace sluice::config
