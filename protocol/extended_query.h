// The frontend messages of the extended query protocol that name prepared
// statements (Parse, Bind, Describe, Close), read and rewritten so that a
// client's statement names can be mapped onto a shared server's names.
// Pure: views into the caller's bytes, builders that append whole messages.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "protocol/wire.h"

namespace sluice::protocol {

// Parse: statement name, then the rest of the body (query text, parameter
// types), which is what makes two statements the same statement.
struct ParseMessage {
  std::string_view name;
  std::string_view definition;  // query\0 int16 count, count x int32 type OIDs
};

// Bind: the portal and statement names; `rest` (formats, values, result
// formats) is carried over unchanged.
struct BindMessage {
  std::string_view portal;
  std::string_view statement;
  std::string_view rest;
};

// Describe or Close: 'S' for a statement, 'P' for a portal, and its name.
struct TargetMessage {
  char target = 0;
  std::string_view name;
};

// Each takes one whole message (type byte, length, body) of its type; nullopt
// when the body is malformed (the server is left to reject it).
std::optional<ParseMessage> read_parse(Bytes message);
std::optional<BindMessage> read_bind(Bytes message);
std::optional<TargetMessage> read_target(Bytes message);

// The query text of a Parse definition or a Query message body.
std::string_view query_text(std::string_view definition);

// Statement names are written as name + suffix (the server's generation).
void append_parse(std::string& out, std::string_view name, std::string_view suffix,
                  std::string_view definition);
void append_bind(std::string& out, const BindMessage& bind, std::string_view statement,
                 std::string_view suffix);
void append_target(std::string& out, char type, char target, std::string_view name, std::string_view suffix);
void append_parse_complete(std::string& out);
void append_close_complete(std::string& out);

}  // namespace sluice::protocol
