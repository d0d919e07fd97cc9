#include "config/auth_files.h"

#include <algorithm>

#include "auth/auth_file.h"
#include "auth/hba.h"
#include "config/file_text.h"
#include "config/key_locator.h"

namespace sluice::config {
namespace {

std::string resolve(const std::string& path, const std::string& config_path) {
  if (path.starts_with('/')) return path;
  const std::size_t slash = config_path.rfind('/');
  return slash == std::string::npos ? path : config_path.substr(0, slash + 1) + path;
}

bool needs_secrets(const auth::HbaRules& hba) {
  return std::any_of(hba.rules.begin(), hba.rules.end(), [](const auth::HbaRule& rule) {
    return rule.method == auth::HbaMethod::md5 || rule.method == auth::HbaMethod::scram_sha_256;
  });
}

// Reads the file the key names, then `parse`s it; errors name the file and line.
template <class Parsed, class Parse>
std::optional<std::string> load(const std::string& key, const std::string& written,
                                const std::string& config_path, const KeyLocator& keys, Parse parse,
                                std::shared_ptr<const Parsed>& out) {
  const std::string path = resolve(written, config_path);
  const auto text = read_file(path);
  if (!text) {
    const auto line = keys.line_of({"auth", key});
    return config_path + (line ? ":" + std::to_string(*line) : "") + ": key 'auth." + key +
           "': cannot read " + path + ": " + text.error();
  }
  auto parsed = parse(*text);
  if (!parsed) return path + ":" + std::to_string(parsed.error().line) + ": " + parsed.error().message;
  out = std::make_shared<const Parsed>(std::move(*parsed));
  return std::nullopt;
}

}  // namespace

std::optional<std::string> load_auth_files(AuthConfig& auth, const std::string& config_path,
                                           std::string_view config_text) {
  if (!auth.file && !auth.hba_file) return std::nullopt;
  const KeyLocator keys(config_text);
  if (auth.file) {
    if (auto error = load("file", *auth.file, config_path, keys, auth::parse_auth_file, auth.secrets))
      return error;
  }
  if (auth.hba_file) {
    if (auto error = load("hba_file", *auth.hba_file, config_path, keys, auth::parse_hba, auth.hba))
      return error;
    if (!auth.secrets && !auth.user && needs_secrets(*auth.hba)) {
      const auto line = keys.line_of({"auth", "hba_file"});
      return config_path + (line ? ":" + std::to_string(*line) : "") +
             ": key 'auth.hba_file': its md5 and scram-sha-256 rules need auth.file or auth.user (the roles' "
             "secrets)";
    }
  }
  return std::nullopt;
}

}  // namespace sluice::config
