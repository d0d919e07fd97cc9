// Reading a whole (small) file: the config and the files it names. Blocking: off the loop.
#pragma once

#include <string>

#include "common/result.h"

namespace sluice::config {

// The file's contents, or the reason it cannot be read ("No such file or directory").
Result<std::string> read_file(const std::string& path);

}  // namespace sluice::config
