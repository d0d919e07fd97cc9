// The files auth.file and auth.hba_file name, read and parsed with the config (at start, on
// reload, and by --check), so a broken one is refused like a broken config: with its file and
// line, the running one kept.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"

namespace sluice::config {

// Fills auth.secrets and auth.hba. Relative paths are taken from the config file's directory.
// `config_text` locates the keys for errors about the files as a whole ("cannot read").
std::optional<std::string> load_auth_files(AuthConfig& auth, const std::string& config_path,
                                           std::string_view config_text);

}  // namespace sluice::config
