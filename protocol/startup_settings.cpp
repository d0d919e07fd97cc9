#include "protocol/startup_settings.h"

#include <algorithm>
#include <cctype>

#include "common/ascii.h"
#include "protocol/sqlstate.h"

namespace sluice::protocol {
namespace {

// pg_split_opts: words split on white space; a backslash takes the next character as is.
std::vector<std::string> split_options(std::string_view options) {
  std::vector<std::string> words;
  std::size_t pos = 0;
  while (pos < options.size()) {
    while (pos < options.size() && std::isspace(static_cast<unsigned char>(options[pos])) != 0) ++pos;
    if (pos == options.size()) break;
    std::string word;
    while (pos < options.size() && std::isspace(static_cast<unsigned char>(options[pos])) == 0) {
      if (options[pos] == '\\' && pos + 1 < options.size()) ++pos;
      word.push_back(options[pos++]);
    }
    words.push_back(std::move(word));
  }
  return words;
}

// ParseLongOption: "name=value", dashes in the name read as underscores.
Result<std::pair<std::string, std::string>, ProtocolError> long_option(const std::string& text,
                                                                       const std::string& switch_text) {
  const auto equals = text.find('=');
  if (equals == std::string::npos || equals == 0) {
    const std::string name = equals == 0 ? text : text.substr(0, equals);
    if (switch_text == "--") {
      return Failure{ProtocolError{sqlstate::kSyntaxError, "--" + name + " requires a value"}};
    }
    return Failure{ProtocolError{sqlstate::kSyntaxError, "-c " + name + " requires a value"}};
  }
  std::string name = ascii_lowered(text.substr(0, equals));
  std::replace(name.begin(), name.end(), '-', '_');
  return std::make_pair(std::move(name), text.substr(equals + 1));
}

bool means_false(std::string_view value) {
  const std::string folded = ascii_lowered(value);
  return folded == "false" || folded == "off" || folded == "no" || folded == "0";
}

// Sorted by name, and of settings named more than once the last: PostgreSQL applies them in order.
StartupSettings last_of_each_name(StartupSettings settings) {
  if (settings.size() < 2) return settings;  // stable_sort would still allocate its buffer
  std::stable_sort(settings.begin(), settings.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  auto kept = settings.begin();
  for (auto it = settings.begin(); it != settings.end(); ++it) {
    const auto next = std::next(it);
    if (next != settings.end() && next->first == it->first) continue;
    if (kept != it) *kept = std::move(*it);
    ++kept;
  }
  settings.erase(kept, settings.end());
  return settings;
}

}  // namespace

Result<StartupSettings, ProtocolError> startup_settings(const StartupPacket& packet) {
  StartupSettings settings;
  settings.reserve(packet.parameters.size());
  if (const std::string_view* options = packet.parameter("options")) {
    const auto words = split_options(*options);
    for (std::size_t i = 0; i < words.size(); ++i) {
      const std::string& word = words[i];
      std::string setting;
      std::string switch_text = "-c";
      if (word == "-c") {
        if (i + 1 == words.size()) {
          return Failure{
              ProtocolError{sqlstate::kSyntaxError, "invalid command-line argument for server process: -c"}};
        }
        setting = words[++i];
      } else if (word.starts_with("-c")) {
        setting = word.substr(2);
      } else if (word.starts_with("--") && word.size() > 2) {
        setting = word.substr(2);
        switch_text = "--";
      } else {
        return Failure{ProtocolError{
            sqlstate::kFeatureNotSupported,
            "sluice passes only -c name=value and --name=value in options, not \"" + word + "\""}};
      }
      auto parsed = long_option(setting, switch_text);
      if (!parsed) return Failure{parsed.error()};
      settings.push_back(std::move(*parsed));
    }
  }
  for (const auto& [name, value] : packet.parameters) {
    if (name == "user" || name == "database" || name == "options") continue;
    if (name == "replication") {
      if (means_false(value)) continue;
      return Failure{ProtocolError{sqlstate::kFeatureNotSupported,
                                   "replication connections are not supported by sluice: connect to "
                                   "PostgreSQL directly"}};
    }
    settings.emplace_back(ascii_lowered(name), value);
  }
  return last_of_each_name(std::move(settings));
}

std::string options_string(const StartupSettings& settings) {
  std::string options;
  for (const auto& [name, value] : settings) {
    if (!options.empty()) options.push_back(' ');
    options += "-c ";
    std::string setting = name;
    setting += '=';
    setting += value;
    for (const char c : setting) {
      if (c == '\\' || std::isspace(static_cast<unsigned char>(c)) != 0) options.push_back('\\');
      options.push_back(c);
    }
  }
  return options;
}

}  // namespace sluice::protocol
