// Reading one HTTP/1.x request head for the metrics endpoint: pure, bounded,
// unit-tested. Only what /metrics needs is kept: method, path, Accept.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::metrics {

struct HttpRequest {
  enum class Status {
    incomplete,  // the head has not ended yet: read more
    complete,
    bad,        // 400: not an HTTP/1.x request line or header
    too_large,  // 431: the head is over the limit
  };
  Status status = Status::incomplete;
  std::string method;
  std::string path;  // without the query string
  std::string accept;
};

// Where the head ends (just past its empty line), looking from `from` on (bytes before it are known
// to hold no end: a reader that gets a request byte by byte scans each byte once); npos when not yet.
std::size_t find_head_end(std::string_view received, std::size_t from = 0);

// `received`: every byte read so far. The head ends at the first empty line.
HttpRequest parse_http_request(std::string_view received, std::size_t max_head_bytes);

}  // namespace sluice::metrics
