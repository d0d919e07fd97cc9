#include "cli/views.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "cli/tables.h"

namespace sluice::cli {
namespace {

using Json = nlohmann::json;
using Align = Table::Align;

bool has_section(const Json& status, std::string_view section) {
  const Json* found = find_path(status, {section});
  return found != nullptr && found->is_object();
}

// "3 active, 10 idle, 0 waiting (13 total)" from an object of counters.
std::string counters(const Json& status, std::string_view section,
                     std::initializer_list<std::string_view> keys) {
  if (!has_section(status, section)) return "-";
  std::string line;
  for (const auto key : keys) {
    if (!line.empty()) line += ", ";
    line += count_cell(find_path(status, {section, key})) + " " + std::string(key);
  }
  return line + " (" + count_cell(find_path(status, {section, "total"})) + " total)";
}

std::string drain_summary(const Json& status) {
  const Json* started = find_path(status, {"drain", "started"});
  if (started == nullptr) return "-";
  if (started->is_boolean() && !started->get<bool>()) return "not started";
  std::string line = "started " + seconds_cell(find_path(status, {"drain", "elapsed_s"})) + " ago";
  const Json* deadline = find_path(status, {"drain", "deadline_in_s"});
  line += deadline != nullptr && deadline->is_number() ? ", deadline in " + seconds_cell(deadline)
                                                       : ", no deadline";
  line += "; " + count_cell(find_path(status, {"drain", "scopes_remaining"})) + " scopes and " +
          count_cell(find_path(status, {"drain", "clients_remaining"})) + " clients remaining; " +
          count_cell(find_path(status, {"drain", "forced"})) + " forced";
  return line;
}

// A live upgrade seen from either side: the old process (predecessor) or the new one (successor).
std::string upgrade_summary(const Json& status) {
  const Json* role = find_path(status, {"upgrade", "role"});
  if (role == nullptr || !role->is_string()) return "-";
  if (role->get<std::string>() == "successor") {
    return "took over from pid " + count_cell(find_path(status, {"upgrade", "old_pid"})) + " (" +
           text_cell(find_path(status, {"upgrade", "old_state"})) + "; " +
           count_cell(find_path(status, {"upgrade", "old_clients"})) + " clients left, " +
           count_cell(find_path(status, {"upgrade", "old_moved"})) + " moved, " +
           count_cell(find_path(status, {"upgrade", "old_forced"})) + " forced); " +
           count_cell(find_path(status, {"upgrade", "moved_in"})) + " moved here";
  }
  return "to pid " + count_cell(find_path(status, {"upgrade", "new_pid"})) + ", " +
         text_cell(find_path(status, {"upgrade", "state"})) + " (" +
         count_cell(find_path(status, {"upgrade", "clients_left"})) + " clients left, " +
         count_cell(find_path(status, {"upgrade", "moved"})) + " moved, " +
         count_cell(find_path(status, {"upgrade", "forced"})) + " forced)";
}

std::string loop_summary(const Json& status) {
  if (!has_section(status, "loop")) return "-";
  return millis_cell(find_path(status, {"loop", "lag_ms"})) + " now, " +
         millis_cell(find_path(status, {"loop", "max_lag_ms"})) + " max, " +
         count_cell(find_path(status, {"loop", "slow_callbacks"})) + " slow callbacks";
}

std::string teardown_summary(const Json& status) {
  if (!has_section(status, "teardown")) return "-";
  return "SLA " + count_cell(find_path(status, {"teardown", "sla_ms"})) + " ms, " +
         count_cell(find_path(status, {"teardown", "releases"})) + " releases, " +
         count_cell(find_path(status, {"teardown", "violations"})) + " over SLA";
}

const Json* list_at(const Json& answer, std::string_view key) {
  const Json* list = find_path(answer, {key});
  return list != nullptr && list->is_array() ? list : nullptr;
}

void print_or_none(const Table& table, std::string_view none, std::ostream& out) {
  if (table.empty()) {
    out << none << '\n';
  } else {
    table.print(out);
  }
}

}  // namespace

bool print_status(const Json& status, std::ostream& out) {
  if (!status.is_object()) return false;
  const std::array<std::pair<const char*, std::string>, 12> lines = {{
      {"state", text_cell(find_path(status, {"state"}))},
      {"version", text_cell(find_path(status, {"version"}))},
      {"pid", count_cell(find_path(status, {"pid"}))},
      {"uptime", seconds_cell(find_path(status, {"uptime_s"}))},
      {"workers", count_cell(find_path(status, {"workers"}))},
      {"clients", counters(status, "clients", {"active", "idle", "waiting", "login", "pinned"})},
      {"servers", counters(status, "servers", {"active", "idle", "connecting", "resetting"})},
      {"drain", drain_summary(status)},
      {"loop lag", loop_summary(status)},
      {"teardown", teardown_summary(status)},
      {"open fds", count_cell(find_path(status, {"fds"}))},
      {"upgrade", upgrade_summary(status)},
  }};
  for (const auto& [label, value] : lines) {
    out << label << std::string(10 - std::string_view(label).size(), ' ') << printable(value) << '\n';
  }
  return true;
}

bool print_pools(const Json& answer, std::ostream& out) {
  const Json* pools = list_at(answer, "pools");
  if (pools == nullptr) return false;
  Table table({{"DATABASE"},
               {"USER"},
               {"MODE"},
               {"SIZE", Align::right},
               {"CL_ACTIVE", Align::right},
               {"CL_IDLE", Align::right},
               {"CL_WAITING", Align::right},
               {"CL_PINNED", Align::right},
               {"SV_ACTIVE", Align::right},
               {"SV_IDLE", Align::right},
               {"SV_CONNECTING", Align::right},
               {"SV_RESETTING", Align::right},
               {"LONGEST_WAIT", Align::right},
               {"PREPARED", Align::right}});
  for (const auto& pool : *pools) {
    table.add_row(
        {text_cell(find_path(pool, {"database"})), text_cell(find_path(pool, {"user"})),
         text_cell(find_path(pool, {"mode"})), count_cell(find_path(pool, {"pool_size"})),
         count_cell(find_path(pool, {"clients", "active"})), count_cell(find_path(pool, {"clients", "idle"})),
         count_cell(find_path(pool, {"clients", "waiting"})),
         count_cell(find_path(pool, {"clients", "pinned"})),
         count_cell(find_path(pool, {"servers", "active"})), count_cell(find_path(pool, {"servers", "idle"})),
         count_cell(find_path(pool, {"servers", "connecting"})),
         count_cell(find_path(pool, {"servers", "resetting"})),
         millis_cell(find_path(pool, {"longest_wait_ms"})),
         count_cell(find_path(pool, {"prepared_statements"}))});
  }
  print_or_none(table, "no pools", out);
  return true;
}

bool print_clients(const Json& answer, std::ostream& out) {
  const Json* clients = list_at(answer, "clients");
  if (clients == nullptr) return false;
  Table table({{"ID", Align::right},
               {"STATE"},
               {"POOL"},
               {"WORKER", Align::right},
               {"AGE", Align::right},
               {"IN_STATE", Align::right},
               {"PREPARED", Align::right},
               {"SETTINGS", Align::right},
               {"TRANSPORT"},
               {"TLS"},
               {"AUTH"},
               {"PINNED"}});
  for (const auto& client : *clients) {
    const Json* settings = find_path(client, {"settings"});
    table.add_row({count_cell(find_path(client, {"id"})), text_cell(find_path(client, {"state"})),
                   text_cell(find_path(client, {"pool"})), count_cell(find_path(client, {"worker"})),
                   seconds_cell(find_path(client, {"age_s"})),
                   seconds_cell(find_path(client, {"state_age_s"})),
                   count_cell(find_path(client, {"prepared_statements"})),
                   settings != nullptr && settings->is_object() ? std::to_string(settings->size()) : "-",
                   text_cell(find_path(client, {"transport"})), text_cell(find_path(client, {"tls"})),
                   text_cell(find_path(client, {"auth"})), text_cell(find_path(client, {"pinned"}))});
  }
  print_or_none(table, "no clients connected", out);
  return true;
}

bool print_servers(const Json& answer, std::ostream& out) {
  const Json* servers = list_at(answer, "servers");
  if (servers == nullptr) return false;
  Table table({{"ID", Align::right},
               {"STATE"},
               {"POOL"},
               {"WORKER", Align::right},
               {"BACKEND_PID", Align::right},
               {"AGE", Align::right},
               {"IN_STATE", Align::right},
               {"PREPARED", Align::right}});
  for (const auto& server : *servers) {
    table.add_row({count_cell(find_path(server, {"id"})), text_cell(find_path(server, {"state"})),
                   text_cell(find_path(server, {"pool"})), count_cell(find_path(server, {"worker"})),
                   count_cell(find_path(server, {"backend_pid"})), seconds_cell(find_path(server, {"age_s"})),
                   seconds_cell(find_path(server, {"state_age_s"})),
                   count_cell(find_path(server, {"prepared_statements"}))});
  }
  print_or_none(table, "no server connections", out);
  return true;
}

bool print_teardown(const Json& answer, std::ostream& out) {
  const Json* outcomes = find_path(answer, {"outcomes"});
  if (outcomes == nullptr || !outcomes->is_object()) return false;
  out << "teardown SLA: " << count_cell(find_path(answer, {"sla_ms"})) << " ms per release\n\n";
  Table table({{"OUTCOME"},
               {"COUNT", Align::right},
               {"P50", Align::right},
               {"P90", Align::right},
               {"P99", Align::right},
               {"MAX", Align::right},
               {"OVER_SLA", Align::right}});
  const auto add = [&](const std::string& name, const Json& stats) {
    table.add_row({name, count_cell(find_path(stats, {"count"})), millis_cell(find_path(stats, {"p50_ms"})),
                   millis_cell(find_path(stats, {"p90_ms"})), millis_cell(find_path(stats, {"p99_ms"})),
                   millis_cell(find_path(stats, {"max_ms"})),
                   count_cell(find_path(stats, {"sla_violations"}))});
  };
  // The four outcomes of DESIGN.md §1 in their order, then anything newer.
  constexpr std::array<std::string_view, 4> kKnown = {"clean", "rollback", "cancel", "discard"};
  for (const auto name : kKnown) {
    const Json* stats = find_path(*outcomes, {name});
    add(std::string(name), stats != nullptr ? *stats : Json());
  }
  for (const auto& [name, stats] : outcomes->items()) {
    if (std::find(kKnown.begin(), kKnown.end(), name) == kKnown.end()) add(name, stats);
  }
  table.print(out);

  const Json* recent = list_at(answer, "recent_violations");
  if (recent == nullptr) return true;
  out << '\n';
  if (recent->empty()) {
    out << "no recent SLA violations\n";
    return true;
  }
  out << "recent SLA violations:\n";
  Table violations({{"AT"},
                    {"OUTCOME"},
                    {"POOL"},
                    {"CLIENT", Align::right},
                    {"DURATION", Align::right},
                    {"ACTIVE_SCOPES", Align::right},
                    {"REASON"}});
  for (const auto& violation : *recent) {
    violations.add_row(
        {text_cell(find_path(violation, {"at"})), text_cell(find_path(violation, {"outcome"})),
         text_cell(find_path(violation, {"pool"})), count_cell(find_path(violation, {"client"})),
         millis_cell(find_path(violation, {"duration_ms"})),
         count_cell(find_path(violation, {"active_scopes"})), text_cell(find_path(violation, {"reason"}))});
  }
  violations.print(out);
  return true;
}

bool print_acknowledgement(const std::string& command, const Json& answer, std::ostream& out) {
  const Json* ok = find_path(answer, {"ok"});
  if (ok == nullptr || !ok->is_boolean() || !ok->get<bool>()) return false;
  out << command << ": ok (state: " << text_cell(find_path(answer, {"state"})) << ")\n";
  if (command == "upgrade") {
    out << "the new process (pid " << count_cell(find_path(answer, {"pid"}))
        << ") accepts every new connection; pid " << count_cell(find_path(answer, {"old_pid"}))
        << " drains its clients and exits\n";
  }
  return true;
}

std::string drain_progress(const Json& status) { return printable("draining: " + drain_summary(status)); }

}  // namespace sluice::cli
