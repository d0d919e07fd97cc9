// State a backend keeps for its session that cannot follow a client to
// another server connection, as PostgreSQL itself reports it: temporary
// objects, session advisory locks, WITH HOLD cursors, LISTEN channels and
// SQL prepared statements. Asked after a transaction that may have made or
// dropped some (the client keeps its server while any is left), and after the
// reset of a server that held some (it must all be gone).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "protocol/query_replies.h"

namespace sluice::pool {

// One row, one text column: what the session holds, as a list ("temporary
// objects, LISTEN"), empty when nothing. Run at ReadyForQuery 'I', where
// transaction-scoped locks and cursors are already gone. Every name is
// qualified: the client's search_path cannot change what it reads.
extern const std::string_view kBackendStateQuery;

// The list from one reply to kBackendStateQuery; nullopt when the reply is
// not that (an error, say).
std::optional<std::string> read_backend_state(const protocol::QueryReply& reply);

// `held`, such a list, with "advisory locks" in it: what the query would say after a session
// advisory lock was taken, without asking it.
std::string with_advisory_locks(std::string_view held);

}  // namespace sluice::pool
