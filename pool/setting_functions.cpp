#include "pool/setting_functions.h"

#include <algorithm>

#include "common/ascii.h"
#include "common/log.h"

namespace sluice::pool {
namespace {

// Escape strings (E'...'): the same under any standard_conforming_strings. An UPDATE's SET is taken
// out before SET is looked for (a statement ends at ';', so a SET of its own is never inside one),
// line comments first (a comment's 'update' must not take a real SET with it).
#define SLUICE_SETTING_SOURCE                                                                    \
  "(p.prosrc OPERATOR(pg_catalog.=) '' "                                                         \
  "OR p.prosrc OPERATOR(pg_catalog.~*) E'set_config|\\\\mreset\\\\M|\\\\mdiscard\\\\M' "         \
  "OR pg_catalog.regexp_replace(pg_catalog.regexp_replace(p.prosrc, E'--[^\\\\n]*', ' ', 'g'), " \
  "E'\\\\mupdate\\\\M[^;]*?\\\\mset\\\\M', ' ', 'gi') "                                          \
  "OPERATOR(pg_catalog.~*) E'\\\\mset\\\\M')"

void sort_unique(std::vector<std::string>& names) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
}

}  // namespace

// f: the functions whose own source may change settings, and — to a fixed point — those whose
// source names one of them (a wrapper that calls set_tenant() changes settings as surely).
const std::string_view kSettingFunctionsQuery =
    "WITH RECURSIVE u AS (SELECT p.oid, p.proname, p.prosrc "
    "FROM pg_catalog.pg_proc p, pg_catalog.pg_language l, pg_catalog.pg_namespace n "
    "WHERE l.oid OPERATOR(pg_catalog.=) p.prolang AND n.oid OPERATOR(pg_catalog.=) p.pronamespace "
    "AND NOT (l.lanname OPERATOR(pg_catalog.=) 'internal' OR l.lanname OPERATOR(pg_catalog.=) 'c') "
    "AND NOT (n.nspname OPERATOR(pg_catalog.=) 'pg_catalog' "
    "OR n.nspname OPERATOR(pg_catalog.=) 'information_schema')), "
    "f AS (SELECT p.oid, p.proname, p.prosrc FROM u p WHERE " SLUICE_SETTING_SOURCE
    " UNION SELECT p.oid, p.proname, p.prosrc FROM u p, f WHERE p.prosrc OPERATOR(pg_catalog.~*) "
    "(E'\\\\m' OPERATOR(pg_catalog.||) pg_catalog.regexp_replace(f.proname, E'(\\\\W)', E'\\\\\\\\\\\\1', "
    "'g') "
    "OPERATOR(pg_catalog.||) E'\\\\M')) "
    "SELECT 'f', proname::pg_catalog.text, NULL::pg_catalog.text FROM f "
    "UNION SELECT 'f', p.proname::pg_catalog.text, NULL FROM pg_catalog.pg_aggregate a, pg_catalog.pg_proc "
    "p, f "
    "WHERE p.oid OPERATOR(pg_catalog.=) a.aggfnoid "
    "AND (a.aggtransfn::pg_catalog.oid OPERATOR(pg_catalog.=) f.oid "
    "OR a.aggfinalfn::pg_catalog.oid OPERATOR(pg_catalog.=) f.oid) "
    "UNION SELECT 't', c.relname::pg_catalog.text, NULL FROM pg_catalog.pg_trigger t, pg_catalog.pg_class c, "
    "f "
    "WHERE NOT t.tgisinternal AND t.tgfoid OPERATOR(pg_catalog.=) f.oid "
    "AND c.oid OPERATOR(pg_catalog.=) t.tgrelid "
    "UNION SELECT 'c', parts[1], NULL FROM f, pg_catalog.regexp_matches(f.prosrc, "
    "E'(?:set_config\\\\s*\\\\(\\\\s*''+|\\\\mset\\\\s+(?:session\\\\s+)?)"
    "([a-z_][a-z0-9_$]*\\\\.[a-z0-9_$.]*[a-z0-9_$])', 'gi') AS m(parts) "
    // Values as hex of their bytes in the server encoding, as session_settings_query returns them.
    "UNION ALL SELECT 'b', 'role', "
    "pg_catalog.encode(pg_catalog.convert_to(pg_catalog.current_setting('role'), "
    "pg_catalog.current_setting('server_encoding')), 'hex') "
    "UNION ALL SELECT 'b', s.name, "
    "pg_catalog.encode(pg_catalog.convert_to(pg_catalog.current_setting(s.name, true), "
    "pg_catalog.current_setting('server_encoding')), 'hex') FROM "
    "(SELECT DISTINCT pg_catalog.split_part(c, '=', 1) AS name "
    "FROM pg_catalog.pg_db_role_setting d, pg_catalog.unnest(d.setconfig) AS c "
    "WHERE (d.setdatabase OPERATOR(pg_catalog.=) 0::pg_catalog.oid OR d.setdatabase OPERATOR(pg_catalog.=) "
    "(SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) "
    "pg_catalog.current_database())) "
    "AND (d.setrole OPERATOR(pg_catalog.=) 0::pg_catalog.oid OR d.setrole OPERATOR(pg_catalog.=) "
    "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) SESSION_USER))) s "
    "WHERE pg_catalog.strpos(s.name, '.') OPERATOR(pg_catalog.>) 0";

#undef SLUICE_SETTING_SOURCE

Result<SettingFunctions> read_setting_functions(const protocol::QueryReply& reply) {
  if (reply.error) return fail("the server answered " + reply.error->describe());
  const auto malformed = fail("its rows are not the query's");
  SettingFunctions read;
  LearntBaseline baseline;
  bool role_read = false;
  for (const auto& row : reply.rows) {
    if (row.size() != 3 || !row[0] || !row[1] || row[0]->size() != 1) return malformed;
    std::string name = ascii_lowered(*row[1]);
    if ((*row[0])[0] == 'b') {
      if (!row[2]) continue;  // a custom setting this server does not know
      auto value = setting_value_from_hex(*row[2]);
      if (!value) return malformed;
      if (name == "role") {
        baseline.role = std::move(*value);
        role_read = true;
      } else {
        baseline.custom.push_back({std::move(name), std::move(*value)});
      }
      continue;
    }
    switch ((*row[0])[0]) {
      case 'f':
        read.names.functions.push_back(std::move(name));
        break;
      case 't':
        read.names.tables.push_back(std::move(name));
        break;
      case 'c':
        read.custom_names.push_back(std::move(name));
        break;
      default:
        return malformed;
    }
  }
  sort_unique(read.names.functions);
  sort_unique(read.names.tables);
  sort_unique(read.custom_names);
  if (!role_read) return fail("it has no row for the role");
  read.baseline = std::move(baseline);
  return read;
}

void SettingFunctionWatch::read_finished(Result<SettingFunctions> read, Clock::time_point now) {
  reading_ = false;
  if (!read) {
    retry_at_ = now + kRetryAfterFailure;  // what was known stays, or every call counts
    if (!failing_)
      log::warning("could not read which functions may change settings (", read.error(),
                   "): every call counts until a read succeeds");
    failing_ = true;
    return;
  }
  failing_ = false;
  marks_known_ = marks_at_read_;
  next_read_ = now + kMaxAge;
  known_ = std::move(*read);
  ++generation_;
  watches_nothing_ = !stale() && known_.names.none();
}

}  // namespace sluice::pool
