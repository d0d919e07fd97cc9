// Finds the line each key of a JSON-with-comments document stands on, so that
// config errors can point at it: nlohmann::json keeps no source positions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

// Keys from the root down, e.g. {"databases", "app", "pool_size"}. A vector
// rather than a dotted string, so a database named "a.b" stays unambiguous.
using KeyPath = std::vector<std::string>;

// "databases.app.pool_size"; the root is "".
std::string dotted(const KeyPath& path);

struct KeyLocation {
  KeyPath path;
  int line = 0;
};

// One pass over text that nlohmann::json has already accepted (with comments);
// on malformed text it stays memory-safe but its answers are best effort.
class KeyLocator {
 public:
  explicit KeyLocator(std::string_view text);

  // 1-based line of the key at `path` (the empty path: where the root value
  // starts), or nullopt if the text has no such key. Keys inside arrays are not
  // recorded: the config schema has none, and the loader rejects an array
  // before looking into it.
  [[nodiscard]] std::optional<int> line_of(const KeyPath& path) const;

  // The first key, in text order, repeated within one object. nlohmann keeps
  // only the last value silently, so the loader rejects duplicates.
  [[nodiscard]] const std::optional<KeyLocation>& first_duplicate() const { return first_duplicate_; }

 private:
  std::map<KeyPath, int> lines_;
  std::optional<KeyLocation> first_duplicate_;
};

}  // namespace sluice::config
