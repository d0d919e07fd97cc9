#include "tests/integration/script_runner.h"

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"

namespace script_test {

std::string outcome(const PGresult* result) {
  switch (PQresultStatus(result)) {
    case PGRES_COMMAND_OK:
      return PQcmdStatus(const_cast<PGresult*>(result));
    case PGRES_TUPLES_OK: {
      std::string rows;
      for (int row = 0; row < PQntuples(result); ++row) {
        for (int column = 0; column < PQnfields(result); ++column)
          rows += std::string(column > 0 ? "|" : "") + PQgetvalue(result, row, column);
        rows += ";";
      }
      return rows;
    }
    default:
      return "error " + ctltest::sqlstate(result);
  }
}

std::vector<std::string> run_script(const std::string& conninfo, int clients,
                                    const std::vector<Step>& script) {
  std::vector<harness::PgConn> connections;
  for (int i = 0; i < clients; ++i) connections.push_back(harness::connect(conninfo));
  std::vector<std::string> transcript;
  for (const Step& step : script) {
    PGconn* conn = connections[static_cast<std::size_t>(step.client)].get();
    const harness::PgResult result(
        step.extended ? PQexecParams(conn, step.sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)
                      : PQexec(conn, step.sql.c_str()));
    transcript.push_back(std::to_string(step.client) + ": " + step.sql + " -> " + outcome(result.get()));
  }
  return transcript;
}

}  // namespace script_test
