#include "protocol/extended_query.h"

namespace sluice::protocol {
namespace {

constexpr std::size_t kHeaderSize = 5;

std::string_view body_of(Bytes message) {
  if (message.size() < kHeaderSize) return {};
  return {reinterpret_cast<const char*>(message.data()) + kHeaderSize, message.size() - kHeaderSize};
}

// Splits off one NUL-terminated string; nullopt when the terminator is missing.
std::optional<std::string_view> take_cstring(std::string_view& body) {
  const std::size_t end = body.find('\0');
  if (end == std::string_view::npos) return std::nullopt;
  const std::string_view text = body.substr(0, end);
  body.remove_prefix(end + 1);
  return text;
}

void append_message_header(std::string& out, char type, std::size_t body_size) {
  out.push_back(type);
  append_u32(out, static_cast<std::uint32_t>(body_size + 4));
}

void append_name(std::string& out, std::string_view name, std::string_view suffix) {
  out.append(name);
  out.append(suffix);
  out.push_back('\0');
}

std::size_t name_size(std::string_view name, std::string_view suffix) {
  return name.size() + suffix.size() + 1;
}

}  // namespace

std::optional<ParseMessage> read_parse(Bytes message) {
  std::string_view body = body_of(message);
  const auto name = take_cstring(body);
  if (!name || body.find('\0') == std::string_view::npos) return std::nullopt;
  return ParseMessage{*name, body};
}

std::optional<BindMessage> read_bind(Bytes message) {
  std::string_view body = body_of(message);
  const auto portal = take_cstring(body);
  if (!portal) return std::nullopt;
  const auto statement = take_cstring(body);
  if (!statement) return std::nullopt;
  return BindMessage{*portal, *statement, body};
}

std::optional<TargetMessage> read_target(Bytes message) {
  std::string_view body = body_of(message);
  if (body.empty()) return std::nullopt;
  const char target = body.front();
  body.remove_prefix(1);
  const auto name = take_cstring(body);
  if (!name || (target != 'S' && target != 'P')) return std::nullopt;
  return TargetMessage{target, *name};
}

std::string_view query_text(std::string_view definition) {
  return definition.substr(0, definition.find('\0'));
}

void append_parse(std::string& out, std::string_view name, std::string_view suffix,
                  std::string_view definition) {
  append_message_header(out, 'P', name_size(name, suffix) + definition.size());
  append_name(out, name, suffix);
  out.append(definition);
}

void append_bind(std::string& out, const BindMessage& bind, std::string_view statement,
                 std::string_view suffix) {
  append_message_header(out, 'B', bind.portal.size() + 1 + name_size(statement, suffix) + bind.rest.size());
  append_name(out, bind.portal, {});
  append_name(out, statement, suffix);
  out.append(bind.rest);
}

void append_target(std::string& out, char type, char target, std::string_view name, std::string_view suffix) {
  append_message_header(out, type, 1 + name_size(name, suffix));
  out.push_back(target);
  append_name(out, name, suffix);
}

void append_parse_complete(std::string& out) { append_message_header(out, '1', 0); }

void append_close_complete(std::string& out) { append_message_header(out, '3', 0); }

}  // namespace sluice::protocol
