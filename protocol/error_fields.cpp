#include "protocol/error_fields.h"

#include <algorithm>
#include <cctype>

namespace sluice::protocol {
namespace {

bool is_sqlstate(std::string_view text) {
  return text.size() == 5 && std::ranges::all_of(text, [](char c) {
           return std::isdigit(static_cast<unsigned char>(c)) != 0 ||
                  std::isupper(static_cast<unsigned char>(c)) != 0;
         });
}

}  // namespace

std::string ErrorFields::describe() const { return severity + " " + sqlstate + " " + message; }

std::optional<ErrorFields> read_error_fields(Bytes message) {
  if (message.size() < 6 || (message[0] != 'E' && message[0] != 'N')) return std::nullopt;
  if (read_u32(message.data() + 1) != message.size() - 1) return std::nullopt;
  ErrorFields fields;
  std::string localized_severity;
  std::size_t pos = 5;
  while (pos < message.size() && message[pos] != 0) {
    const char code = static_cast<char>(message[pos++]);
    const std::size_t begin = pos;
    while (pos < message.size() && message[pos] != 0) ++pos;
    if (pos == message.size()) return std::nullopt;  // a field without its NUL
    std::string value(reinterpret_cast<const char*>(message.data() + begin), pos - begin);
    ++pos;
    switch (code) {
      case 'S':
        localized_severity = std::move(value);
        break;
      case 'V':
        fields.severity = std::move(value);
        break;
      case 'C':
        fields.sqlstate = std::move(value);
        break;
      case 'M':
        fields.message = std::move(value);
        break;
      default:
        break;
    }
  }
  if (fields.severity.empty()) fields.severity = std::move(localized_severity);
  if (!is_sqlstate(fields.sqlstate)) return std::nullopt;
  return fields;
}

std::optional<ErrorFields> find_verbose_error(std::string_view text) {
  // Each line may be "SEVERITY:  SQLSTATE: message"; the first such line is the error.
  std::size_t line_start = 0;
  while (line_start < text.size()) {
    std::size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    const std::string_view line = text.substr(line_start, line_end - line_start);
    for (std::size_t at = line.find(":  "); at != std::string_view::npos; at = line.find(":  ", at + 1)) {
      std::size_t word = at;
      // The severity may be localized (lc_messages): the word before ":  " whatever its letters.
      while (word > 0 && line[word - 1] != ' ') --word;
      const std::string_view code = line.substr(at + 3, 5);
      if (word == at || !is_sqlstate(code) || line.substr(at + 8, 2) != ": ") continue;
      return ErrorFields{std::string(line.substr(word, at - word)), std::string(code),
                         std::string(line.substr(at + 10))};
    }
    line_start = line_end + 1;
  }
  return std::nullopt;
}

}  // namespace sluice::protocol
