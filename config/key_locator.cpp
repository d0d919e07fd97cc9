#include "config/key_locator.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace sluice::config {

namespace {

// One '{' or '[' not yet closed.
struct Container {
  bool is_object = false;
  bool recorded = false;       // false inside arrays, whose keys are not recorded
  KeyPath path;                // of this container
  bool expect_key = false;     // objects: after '{' or ',' the next string is a key
  std::string last_key;        // objects: the key whose value is being read
  std::set<std::string> seen;  // objects: keys so far, to spot duplicates
};

// Keys must compare equal to nlohmann's decoded ones, so escapes ("\u0070ort")
// are decoded by nlohmann itself; the common case needs no decoding.
std::string decode_key(std::string_view literal) {
  if (literal.size() >= 2 && literal.find('\\') == std::string_view::npos) {
    return std::string(literal.substr(1, literal.size() - 2));
  }
  const auto decoded = nlohmann::json::parse(literal, nullptr, /*allow_exceptions=*/false);
  return decoded.is_string() ? decoded.get<std::string>() : std::string(literal);
}

int count_newlines(std::string_view text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

std::string dotted(const KeyPath& path) {
  std::string out;
  for (std::size_t k = 0; k < path.size(); ++k) {
    if (k > 0) out += '.';
    out += path[k];
  }
  return out;
}

// A token-level scan: only strings, comments, brackets and commas matter for
// where keys are; numbers, literals and ':' are skipped byte by byte.
KeyLocator::KeyLocator(std::string_view text) {
  std::vector<Container> open;
  int line = 1;
  bool root_seen = false;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    const char next = i + 1 < text.size() ? text[i + 1] : '\0';

    if (c == '\n') {
      ++line;
      ++i;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
      continue;
    }
    if (c == '/' && (next == '/' || next == '*')) {
      // A "//" comment stops before its newline, which the loop then counts.
      std::size_t stop = text.size();
      if (next == '/') {
        stop = std::min(text.find('\n', i), text.size());
      } else if (const std::size_t close = text.find("*/", i + 2); close != std::string_view::npos) {
        stop = close + 2;
      }
      line += count_newlines(text.substr(i, stop - i));
      i = stop;
      continue;
    }

    if (!root_seen) {
      lines_[KeyPath{}] = line;
      root_seen = true;
    }

    if (c == '"') {
      std::size_t end = i + 1;  // the closing quote; a backslash escapes the next byte
      while (end < text.size() && text[end] != '"') end += text[end] == '\\' ? 2 : 1;
      const std::size_t stop = std::min(end + 1, text.size());
      const std::string_view literal = text.substr(i, stop - i);

      if (!open.empty() && open.back().is_object && open.back().expect_key) {
        Container& object = open.back();
        object.expect_key = false;
        object.last_key = decode_key(literal);
        if (object.recorded) {
          KeyPath path = object.path;
          path.push_back(object.last_key);
          if (!object.seen.insert(object.last_key).second && !first_duplicate_) {
            first_duplicate_ = KeyLocation{path, line};
          }
          lines_[std::move(path)] = line;  // a duplicate: the last one, the value nlohmann keeps
        }
      }
      line += count_newlines(literal);  // none in valid JSON; keeps counting honest otherwise
      i = stop;
      continue;
    }

    if (c == '{' || c == '[') {
      Container child;
      child.is_object = c == '{';
      child.expect_key = child.is_object;
      if (open.empty()) {
        child.recorded = true;  // the root
      } else if (open.back().is_object && open.back().recorded) {
        child.recorded = true;
        child.path = open.back().path;
        child.path.push_back(open.back().last_key);
      }
      open.push_back(std::move(child));
    } else if (c == '}' || c == ']') {
      if (!open.empty()) open.pop_back();
    } else if (c == ',') {
      if (!open.empty() && open.back().is_object) open.back().expect_key = true;
    }
    ++i;
  }
}

std::optional<int> KeyLocator::line_of(const KeyPath& path) const {
  const auto found = lines_.find(path);
  if (found == lines_.end()) return std::nullopt;
  return found->second;
}

}  // namespace sluice::config
