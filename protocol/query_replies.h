// Reading the replies to simple Query messages sluiced sends on its own (the
// settings capture at a scope's release), once they have all arrived: one
// result per Query, up to its ReadyForQuery. Pure; malformed input is reported,
// never trusted.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "protocol/error_fields.h"
#include "protocol/wire.h"

namespace sluice::protocol {

struct QueryReply {
  std::vector<std::vector<std::optional<std::string>>> rows;  // every DataRow, in order; nullopt is NULL
  std::optional<ErrorFields> error;                           // the first ErrorResponse
};

// Whole messages from a server, ending with the last Query's ReadyForQuery.
// nullopt when a message is malformed or the bytes do not end at a ReadyForQuery.
std::optional<std::vector<QueryReply>> read_query_replies(Bytes replies);

}  // namespace sluice::protocol
