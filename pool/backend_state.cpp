#include "pool/backend_state.h"

namespace sluice::pool {

// pg_my_temp_schema() is 0 for a backend that never made a temporary object:
// the catalog lookup is skipped then. Every object made in a schema depends on
// it in pg_depend, or on an object that does (an index on its table): what
// drops a temporary schema's contents with its session is that dependency. One
// index lookup finds temporary objects of every kind, statistics, operators and
// collations as well as tables, types and functions.
const std::string_view kBackendStateQuery =
    "SELECT pg_catalog.concat_ws(', ', "
    "CASE WHEN pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.=) 0 THEN NULL "
    "WHEN EXISTS (SELECT FROM pg_catalog.pg_depend WHERE refclassid OPERATOR(pg_catalog.=) "
    "'pg_catalog.pg_namespace'::pg_catalog.regclass "
    "AND refobjid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) "
    "THEN 'temporary objects' END, "
    "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype OPERATOR(pg_catalog.=) 'advisory' "
    "AND pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()) THEN 'advisory locks' END, "
    "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable) THEN 'WITH HOLD cursors' END, "
    "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_listening_channels()) THEN 'LISTEN' END, "
    "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql) "
    "THEN 'SQL prepared statements' END)";

std::optional<std::string> read_backend_state(const protocol::QueryReply& reply) {
  if (reply.error || reply.rows.size() != 1 || reply.rows[0].size() != 1 || !reply.rows[0][0]) {
    return std::nullopt;
  }
  return *reply.rows[0][0];
}

std::string with_advisory_locks(std::string_view held) {
  if (held.find("advisory locks") != std::string_view::npos) return std::string(held);
  // In kBackendStateQuery's order: after "temporary objects", before the rest.
  constexpr std::string_view kTemporary = "temporary objects";
  std::string list(held);
  if (held.starts_with(kTemporary)) return list.insert(kTemporary.size(), ", advisory locks");
  return list.insert(0, held.empty() ? "advisory locks" : "advisory locks, ");
}

}  // namespace sluice::pool
