#include "pool/setting_functions.h"

#include <algorithm>

namespace sluice::pool {
namespace {

// Escape strings (E'...'): the same under any standard_conforming_strings. An UPDATE's SET is taken
// out before SET is looked for (a statement ends at ';', so a SET of its own is never inside one).
#define SLUICE_SETTING_SOURCE                                                           \
  "(p.prosrc OPERATOR(pg_catalog.=) '' "                                               \
  "OR p.prosrc OPERATOR(pg_catalog.~*) E'set_config|\\\\mreset\\\\M|\\\\mdiscard\\\\M' " \
  "OR pg_catalog.regexp_replace(p.prosrc, E'\\\\mupdate\\\\M[^;]*?\\\\mset\\\\M', ' ', 'gi') "  \
  "OPERATOR(pg_catalog.~*) E'\\\\mset\\\\M')"

void ascii_lower(std::string& text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

void sort_unique(std::vector<std::string>& names) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
}

}  // namespace

const std::string_view kSettingFunctionsQuery =
    "WITH f AS (SELECT p.oid, p.proname, p.prosrc "
    "FROM pg_catalog.pg_proc p, pg_catalog.pg_language l, pg_catalog.pg_namespace n "
    "WHERE l.oid OPERATOR(pg_catalog.=) p.prolang AND n.oid OPERATOR(pg_catalog.=) p.pronamespace "
    "AND NOT (l.lanname OPERATOR(pg_catalog.=) 'internal' OR l.lanname OPERATOR(pg_catalog.=) 'c') "
    "AND NOT (n.nspname OPERATOR(pg_catalog.=) 'pg_catalog' "
    "OR n.nspname OPERATOR(pg_catalog.=) 'information_schema') "
    "AND " SLUICE_SETTING_SOURCE
    ") "
    "SELECT 'f', proname::pg_catalog.text FROM f "
    "UNION SELECT 'f', p.proname::pg_catalog.text FROM pg_catalog.pg_aggregate a, pg_catalog.pg_proc p, f "
    "WHERE p.oid OPERATOR(pg_catalog.=) a.aggfnoid "
    "AND (a.aggtransfn::pg_catalog.oid OPERATOR(pg_catalog.=) f.oid "
    "OR a.aggfinalfn::pg_catalog.oid OPERATOR(pg_catalog.=) f.oid) "
    "UNION SELECT 't', c.relname::pg_catalog.text FROM pg_catalog.pg_trigger t, pg_catalog.pg_class c, f "
    "WHERE NOT t.tgisinternal AND t.tgfoid OPERATOR(pg_catalog.=) f.oid "
    "AND c.oid OPERATOR(pg_catalog.=) t.tgrelid "
    "UNION SELECT 'c', parts[1] FROM f, pg_catalog.regexp_matches(f.prosrc, "
    "E'(?:set_config\\\\s*\\\\(\\\\s*''+|\\\\mset\\\\s+(?:session\\\\s+)?)"
    "([a-z_][a-z0-9_$]*\\\\.[a-z0-9_$.]*[a-z0-9_$])', 'gi') AS m(parts)";

#undef SLUICE_SETTING_SOURCE

std::optional<SettingFunctions> read_setting_functions(const protocol::QueryReply& reply) {
  if (reply.error) return std::nullopt;
  SettingFunctions read;
  for (const auto& row : reply.rows) {
    if (row.size() != 2 || !row[0] || !row[1] || row[0]->size() != 1) return std::nullopt;
    std::string name = *row[1];
    ascii_lower(name);
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
        return std::nullopt;
    }
  }
  sort_unique(read.names.functions);
  sort_unique(read.names.tables);
  sort_unique(read.custom_names);
  return read;
}

void SettingFunctionWatch::read_finished(std::optional<SettingFunctions> read, Clock::time_point now) {
  reading_ = false;
  if (!read) {
    next_read_ = now + kRetryAfterFailure;  // what was known stays, or every call counts
    return;
  }
  next_read_ = now + kMaxAge;
  known_ = std::move(*read);
  ++generation_;
}

}  // namespace sluice::pool
