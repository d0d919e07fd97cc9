// Scripts of steps by interleaved clients, run once on direct connections and
// once through sluiced so that the transcripts can be compared: what a pooled
// client sees must be what a direct one sees.
#pragma once

#include <libpq-fe.h>

#include <string>
#include <vector>

namespace script_test {

struct Step {
  int client;
  std::string sql;
  bool extended = false;  // PQexecParams: the extended protocol
};

// What a step gave: its command tag, its rows ("a|b;c|d;"), or "error " and its SQLSTATE.
std::string outcome(const PGresult* result);

// Opens `clients` connections to `conninfo` and runs the script; one line per step.
std::vector<std::string> run_script(const std::string& conninfo, int clients,
                                    const std::vector<Step>& script);

}  // namespace script_test
