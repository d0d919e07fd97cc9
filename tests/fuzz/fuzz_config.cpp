// libFuzzer target: a config file's text (JSON with comments). The loader must
// answer every input with a Config or an error, never a crash or an exception.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)sluice::config::parse_config(text, "fuzz.json");
  return 0;
}
