#include "protocol/query_replies.h"

namespace sluice::protocol {
namespace {

// A DataRow's body: Int16 column count, then per column Int32 length (-1: NULL) and bytes.
bool read_data_row(Bytes body, std::vector<std::optional<std::string>>& row) {
  if (body.size() < 2) return false;
  const std::uint16_t columns = read_u16(body.data());
  std::size_t at = 2;
  for (std::uint16_t i = 0; i < columns; ++i) {
    if (body.size() - at < 4) return false;
    const auto length = static_cast<std::int32_t>(read_u32(body.data() + at));
    at += 4;
    if (length < 0) {
      row.emplace_back(std::nullopt);
      continue;
    }
    if (body.size() - at < static_cast<std::size_t>(length)) return false;
    row.emplace_back(
        std::string(reinterpret_cast<const char*>(body.data() + at), static_cast<std::size_t>(length)));
    at += static_cast<std::size_t>(length);
  }
  return at == body.size();
}

}  // namespace

std::optional<std::vector<QueryReply>> read_query_replies(Bytes replies) {
  std::vector<QueryReply> results(1);
  std::size_t at = 0;
  while (at < replies.size()) {
    if (replies.size() - at < 5) return std::nullopt;
    const char type = static_cast<char>(replies[at]);
    const std::uint32_t length = read_u32(replies.data() + at + 1);
    if (length < 4 || replies.size() - at - 1 < length) return std::nullopt;
    const Bytes message = replies.subspan(at, std::size_t{length} + 1);
    const Bytes body = message.subspan(5);
    at += message.size();
    QueryReply& current = results.back();
    if (type == 'D') {
      current.rows.emplace_back();
      if (!read_data_row(body, current.rows.back())) return std::nullopt;
    } else if (type == 'E' && !current.error) {
      current.error = read_error_fields(message);
      if (!current.error) return std::nullopt;
    } else if (type == 'Z') {
      if (at == replies.size()) return results;
      results.emplace_back();
    }
  }
  return std::nullopt;
}

}  // namespace sluice::protocol
