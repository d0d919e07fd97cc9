#include "metrics/http_request.h"

#include <algorithm>
#include <cctype>

#include "common/ascii.h"

namespace sluice::metrics {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);  // header names are ASCII (RFC 9110)
         });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
    text.remove_suffix(1);
  return text;
}

bool is_token(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

HttpRequest bad() { return {HttpRequest::Status::bad, {}, {}, {}}; }

}  // namespace

// A bare LF ends lines too (RFC 9112 §2.2 lets a server accept it).
std::size_t find_head_end(std::string_view received, std::size_t from) {
  for (std::size_t at = received.find('\n', from); at != std::string_view::npos;
       at = received.find('\n', at + 1)) {
    if (at + 1 < received.size() && received[at + 1] == '\n') return at + 2;
    if (at + 2 < received.size() && received[at + 1] == '\r' && received[at + 2] == '\n') return at + 3;
  }
  return std::string_view::npos;
}

HttpRequest parse_http_request(std::string_view received, std::size_t max_head_bytes) {
  const std::size_t end = find_head_end(received);
  if (end == std::string_view::npos) {
    if (received.size() > max_head_bytes) return {HttpRequest::Status::too_large, {}, {}, {}};
    return {};
  }
  if (end > max_head_bytes) return {HttpRequest::Status::too_large, {}, {}, {}};
  std::string_view head = received.substr(0, end);

  HttpRequest request;
  request.status = HttpRequest::Status::complete;
  const std::size_t line_end = head.find('\n');
  const std::string_view request_line = trim(head.substr(0, line_end));
  head.remove_prefix(line_end + 1);
  const std::size_t first_space = request_line.find(' ');
  const std::size_t last_space = request_line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) return bad();
  const std::string_view method = request_line.substr(0, first_space);
  const std::string_view target = request_line.substr(first_space + 1, last_space - first_space - 1);
  const std::string_view version = request_line.substr(last_space + 1);
  if (!is_token(method) || target.empty() || target.find(' ') != std::string_view::npos ||
      (version != "HTTP/1.1" && version != "HTTP/1.0")) {
    return bad();
  }
  request.method = method;
  request.path = target.substr(0, target.find('?'));

  while (!head.empty()) {
    const std::size_t next = head.find('\n');
    const std::string_view line = trim(head.substr(0, next));
    head.remove_prefix(next == std::string_view::npos ? head.size() : next + 1);
    if (line.empty()) break;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return bad();
    if (iequals(line.substr(0, colon), "accept")) {
      if (!request.accept.empty()) request.accept += ", ";
      request.accept += trim(line.substr(colon + 1));
    }
  }
  return request;
}

}  // namespace sluice::metrics
