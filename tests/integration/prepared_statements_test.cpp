// Named prepared statements in transaction mode: each scenario runs directly
// against PostgreSQL and through sluiced, and the client must see the same
// results, errors and SQLSTATEs — while sluiced moves its statements between
// server connections, renames them, evicts them and answers for them.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"

namespace harness {
namespace {

std::string describe(PGresult* result) {
  std::string line = PQresStatus(PQresultStatus(result));
  if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) {
    line += std::string(" ") + state + " " + PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  }
  for (int row = 0; row < PQntuples(result); ++row) {
    line += " |";
    for (int column = 0; column < PQnfields(result); ++column) {
      line += " ";
      line += PQgetisnull(result, row, column) ? "NULL" : PQgetvalue(result, row, column);
    }
  }
  if (PQresultStatus(result) == PGRES_COMMAND_OK && PQnparams(result) > 0) {
    line += " params=" + std::to_string(PQnparams(result));
  }
  return line;
}

// A transcript of what one client sees: one line per result.
class Transcript {
 public:
  explicit Transcript(PGconn* conn) : conn_(conn) {}
  void add(PGresult* result) {
    lines_.push_back(describe(result));
    PQclear(result);
  }
  void prepare(const std::string& name, const std::string& sql) {
    add(PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr));
  }
  void exec_prepared(const std::string& name, const std::vector<std::string>& values = {}) {
    std::vector<const char*> params;
    for (const auto& value : values) params.push_back(value.c_str());
    add(PQexecPrepared(conn_, name.c_str(), static_cast<int>(params.size()), params.data(), nullptr, nullptr,
                       0));
  }
  void exec(const std::string& sql) { add(PQexec(conn_, sql.c_str())); }
  // Through the extended protocol (an unnamed Parse), as psycopg 3 sends its commands.
  void exec_params(const std::string& sql) {
    add(PQexecParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0));
  }
  void describe_prepared(const std::string& name) { add(PQdescribePrepared(conn_, name.c_str())); }
  // Everything a pipeline returns up to and including its sync.
  void pipeline(const std::function<void()>& send) {
    ASSERT_EQ(PQenterPipelineMode(conn_), 1);
    send();
    ASSERT_EQ(PQpipelineSync(conn_), 1);
    for (;;) {
      PGresult* result = PQgetResult(conn_);
      if (result == nullptr) continue;  // end of one query's results
      const bool sync = PQresultStatus(result) == PGRES_PIPELINE_SYNC;
      add(result);
      if (sync) break;
    }
    ASSERT_EQ(PQexitPipelineMode(conn_), 1);
  }
  [[nodiscard]] const std::vector<std::string>& lines() const { return lines_; }

 private:
  PGconn* conn_;
  std::vector<std::string> lines_;
};

using Scenario = std::function<void(Transcript&, PGconn*)>;

std::vector<std::string> run_on(const std::string& conninfo, const Scenario& scenario) {
  const PgConn conn = connect(conninfo);
  Transcript transcript(conn.get());
  scenario(transcript, conn.get());
  return transcript.lines();
}

// The same scenario directly and through sluiced must read the same. Through
// sluiced another client first prepares the scenario's names with other
// queries: on a pool of one server, names that were not rewritten would clash.
void expect_same_as_direct(Sluiced& sluiced, const Scenario& scenario,
                           const std::vector<std::string>& names) {
  const auto direct = run_on(postgres().conninfo(), scenario);
  const PgConn squatter = connect(sluiced.conninfo());
  for (const auto& name : names) {
    const PgResult result(PQprepare(squatter.get(), name.c_str(), "SELECT 'squatter'", 0, nullptr));
    ASSERT_EQ(PQresultStatus(result.get()), PGRES_COMMAND_OK) << PQresultErrorMessage(result.get());
  }
  const auto pooled = run_on(sluiced.conninfo(), scenario);
  EXPECT_EQ(pooled, direct);
  ASSERT_FALSE(direct.empty());
}

// Holds a server connection inside a transaction so that the next scope must take another.
class ServerHog {
 public:
  explicit ServerHog(Sluiced& sluiced) : conn_(connect(sluiced.conninfo())) {
    exec_ok(conn_, "BEGIN");
    exec_ok(conn_, "SELECT 1");
  }
  ~ServerHog() { exec(conn_, "COMMIT"); }
  ServerHog(const ServerHog&) = delete;
  ServerHog& operator=(const ServerHog&) = delete;

 private:
  PgConn conn_;
};

TEST(PreparedStatementsTest, SameNameOnTwoClientsSharingOneServer) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn first = connect(sluiced.conninfo());
  const PgConn second = connect(sluiced.conninfo());
  Transcript a(first.get());
  Transcript b(second.get());
  a.prepare("s", "SELECT 'first'::text, $1::int");
  b.prepare("s", "SELECT 'second'::text, $1::int * 2");
  for (int i = 0; i < 50; ++i) {
    a.exec_prepared("s", {std::to_string(i)});
    b.exec_prepared("s", {std::to_string(i)});
  }
  ASSERT_EQ(a.lines().size(), 51U);
  EXPECT_EQ(a.lines()[0], "PGRES_COMMAND_OK");
  EXPECT_EQ(a.lines()[50], "PGRES_TUPLES_OK | first 49");
  EXPECT_EQ(b.lines()[50], "PGRES_TUPLES_OK | second 98");
}

TEST(PreparedStatementsTest, StatementFollowsItsClientToAnotherServer) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());
  Transcript client(conn.get());
  client.prepare("where_am_i", "SELECT pg_backend_pid()::text");
  std::set<std::string> pids;
  for (int round = 0; round < 6; ++round) {
    // The hog takes the server the client used last, so the client moves.
    auto hog = std::make_unique<ServerHog>(sluiced);
    client.exec("BEGIN");
    client.exec_prepared("where_am_i");
    const std::string line = client.lines().back();
    hog.reset();
    client.exec("COMMIT");
    ASSERT_EQ(line.rfind("PGRES_TUPLES_OK | ", 0), 0U) << line;
    pids.insert(line.substr(std::string("PGRES_TUPLES_OK | ").size()));
  }
  EXPECT_EQ(pids.size(), 2U) << "the statement ran on only one server";
}

TEST(PreparedStatementsTest, ErrorsForUnknownAndDuplicateNamesAreWhatPostgresSays) {
  Sluiced sluiced({.pool_size = 1});
  expect_same_as_direct(sluiced,
                        [](Transcript& t, PGconn*) {
                          t.exec_prepared("nope");
                          t.describe_prepared("nope");
                          t.prepare("twice", "SELECT 1");
                          t.prepare("twice", "SELECT 2");
                          t.exec_prepared("twice");
                          t.describe_prepared("twice");
                          t.exec("BEGIN");
                          t.prepare("twice", "SELECT 3");  // fails and aborts the transaction
                          t.exec("SELECT 1");
                          t.exec("ROLLBACK");
                          t.exec_prepared("twice");
                        },
                        {"nope", "twice"});
}

TEST(PreparedStatementsTest, ParametersAndDescribeMatchPostgres) {
  Sluiced sluiced({.pool_size = 1});
  expect_same_as_direct(sluiced,
                        [](Transcript& t, PGconn* conn) {
                          const Oid types[2] = {23, 25};  // int4, text
                          t.add(PQprepare(conn, "typed", "SELECT $1 + 1, upper($2), NULL::int", 2, types));
                          t.describe_prepared("typed");
                          for (int i = 0; i < 20; ++i) t.exec_prepared("typed", {std::to_string(i), "abc"});
                          t.prepare("insert_returning", "SELECT generate_series(1, $1::int)");
                          t.exec_prepared("insert_returning", {"3"});
                        },
                        {"typed", "insert_returning"});
}

TEST(PreparedStatementsTest, PipelinedBatchesWithErrorsSkipToSyncLikePostgres) {
  Sluiced sluiced({.pool_size = 1});
  expect_same_as_direct(sluiced,
                        [](Transcript& t, PGconn* conn) {
                          t.prepare("ok", "SELECT $1::int * 10");
                          t.pipeline([&] {
                            const char* ten[] = {"1"};
                            PQsendQueryPrepared(conn, "ok", 1, ten, nullptr, nullptr, 0);
                            PQsendQueryParams(conn, "SELECT 1/0", 0, nullptr, nullptr, nullptr, nullptr, 0);
                            PQsendPrepare(conn, "never", "SELECT 2", 0, nullptr);  // skipped: never prepared
                            PQsendQueryPrepared(conn, "ok", 1, ten, nullptr, nullptr, 0);
                          });
                          t.exec_prepared("never");
                          t.pipeline([&] {
                            const char* two[] = {"2"};
                            PQsendPrepare(conn, "later", "SELECT $1::int + 100", 0, nullptr);
                            PQsendQueryPrepared(conn, "later", 1, two, nullptr, nullptr, 0);
                            PQsendQueryPrepared(conn, "ok", 1, two, nullptr, nullptr, 0);
                            PQsendQueryPrepared(conn, "missing", 1, two, nullptr, nullptr, 0);
                            PQsendQueryPrepared(conn, "ok", 1, two, nullptr, nullptr, 0);
                          });
                          t.exec_prepared("later", {"5"});
                        },
                        {"ok", "never", "later"});
}

TEST(PreparedStatementsTest, EvictionFromASmallCacheKeepsResultsRight) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"pool", {{"max_prepared_statements", 2}}}}});
  const PgConn conn = connect(sluiced.conninfo());
  Transcript t(conn.get());
  for (int s = 0; s < 5; ++s)
    t.prepare("s" + std::to_string(s), "SELECT " + std::to_string(s) + " + $1::int");
  for (int round = 0; round < 10; ++round) {
    for (int s = 0; s < 5; ++s) {
      t.exec_prepared("s" + std::to_string(s), {std::to_string(round)});
      ASSERT_EQ(t.lines().back(), "PGRES_TUPLES_OK | " + std::to_string(s + round));
    }
  }
  // No server holds more than the cache allows (the client's own names never reach it).
  EXPECT_EQ(scalar(conn, "SELECT count(*) <= 2 FROM pg_prepared_statements WHERE name LIKE 'sluice_%'"), "t");
  EXPECT_EQ(scalar(conn, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 's_'"), "0");
}

TEST(PreparedStatementsTest, CloseForgetsTheNameButNotOtherClientsStatement) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn other_conn = connect(sluiced.conninfo());
  Transcript other(other_conn.get());
  other.prepare("shared", "SELECT 42");

  RawClient raw(sluiced.socket_path());
  ASSERT_EQ(raw.login(), "I");
  const std::string parse =
      std::string("P") + be32(4 + 7 + 10 + 2) + std::string("shared\0SELECT 42\0\0\0", 19);
  const std::string sync = std::string("S") + be32(4);
  raw.send(parse + sync);
  EXPECT_EQ(raw.read_message()->type, '1');
  EXPECT_EQ(raw.read_message()->type, 'Z');
  raw.send(std::string("C") + be32(4 + 1 + 7) + std::string("Sshared\0", 8) + sync);
  EXPECT_EQ(raw.read_message()->type, '3');
  EXPECT_EQ(raw.read_message()->type, 'Z');
  const std::string bind =
      std::string("B") + be32(4 + 1 + 7 + 2 + 2 + 2) + std::string("\0shared\0\0\0\0\0\0\0", 14);
  raw.send(bind + sync);
  const auto error = raw.read_message();
  ASSERT_EQ(error->type, 'E');
  EXPECT_EQ(error_fields(*error)['C'], "26000");
  EXPECT_EQ(error_fields(*error)['M'], "prepared statement \"shared\" does not exist");
  EXPECT_EQ(raw.read_message()->type, 'Z');

  other.exec_prepared("shared");
  EXPECT_EQ(other.lines().back(), "PGRES_TUPLES_OK | 42");
}

TEST(PreparedStatementsTest, ABatchArrivingByteByByteIsRoutedWhole) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn squatter = connect(sluiced.conninfo());
  const PgResult squatted(PQprepare(squatter.get(), "s", "SELECT 'squatter'", 0, nullptr));
  ASSERT_EQ(PQresultStatus(squatted.get()), PGRES_COMMAND_OK);

  RawClient raw(sluiced.socket_path());
  ASSERT_EQ(raw.login(), "I");
  const std::string parse =
      std::string("P") + be32(4 + 2 + 13 + 2) + std::string("s\0SELECT 'raw'\0\0\0", 17);
  const std::string bind = std::string("B") + be32(4 + 1 + 2 + 6) + std::string("\0s\0\0\0\0\0\0\0", 9);
  const std::string execute = std::string("E") + be32(4 + 1 + 4) + std::string("\0\0\0\0\0", 5);
  const std::string sync = std::string("S") + be32(4);
  // Each byte its own write: headers and bodies reach sluiced cut anywhere.
  for (const char byte : parse + bind + execute + sync) raw.send(std::string(1, byte));
  for (const char expected : {'1', '2', 'D', 'C', 'Z'}) {
    const auto message = raw.read_message();
    ASSERT_TRUE(message.has_value());
    ASSERT_EQ(message->type, expected) << message->payload;
    if (expected == 'D') {
      EXPECT_NE(message->payload.find("raw"), std::string::npos) << "not the squatter's row";
    }
  }
}

// A Parse several reads long is gathered whole: sluiced releases a large message's buffers after
// each read it forwards, never the one still gathering.
TEST(PreparedStatementsTest, AStatementLongerThanSeveralReadsIsRoutedWhole) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());
  const std::string sql =
      "SELECT length('" + std::string(300000, 'x') + "')";  // sluiced reads 64 KiB at most
  for (const char* name : {"long_a", "long_b"}) {
    const PgResult prepared(PQprepare(conn.get(), name, sql.c_str(), 0, nullptr));
    ASSERT_EQ(PQresultStatus(prepared.get()), PGRES_COMMAND_OK) << PQerrorMessage(conn.get());
    const PgResult result(PQexecPrepared(conn.get(), name, 0, nullptr, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(result.get()), PGRES_TUPLES_OK) << PQerrorMessage(conn.get());
    EXPECT_STREQ(PQgetvalue(result.get(), 0, 0), "300000");
  }
}

TEST(PreparedStatementsTest, AnsweredRequestsAloneDoNotKeepTheServer) {
  Sluiced sluiced({.pool_size = 1, .overrides = {{"pool", {{"query_wait_timeout_ms", 3000}}}}});
  RawClient raw(sluiced.socket_path());
  ASSERT_EQ(raw.login(), "I");
  raw.send(std::string("C") + be32(4 + 1 + 5) + std::string("Sgone\0", 6));  // no Sync, no Flush
  EXPECT_EQ(raw.read_message()->type, '3');
  // The only server is free for someone else, although the raw client said nothing more.
  const PgConn other = connect(sluiced.conninfo());
  EXPECT_EQ(scalar(other, "SELECT 1"), "1");
}

// SQL PREPARE works too (it pins: session_pin_test); DISCARD ALL forgets both kinds.
TEST(PreparedStatementsTest, DiscardAllForgetsStatements) {
  Sluiced sluiced({.pool_size = 2});
  const PgConn conn = connect(sluiced.conninfo());
  Transcript t(conn.get());
  t.prepare("kept", "SELECT 7");
  t.exec_prepared("kept");
  t.exec("DISCARD ALL");
  t.exec_prepared("kept");
  ASSERT_EQ(t.lines().size(), 4U);
  EXPECT_EQ(t.lines()[1], "PGRES_TUPLES_OK | 7");
  EXPECT_EQ(t.lines()[3], "PGRES_FATAL_ERROR 26000 prepared statement \"kept\" does not exist");
  t.prepare("kept", "SELECT 8");
  t.exec_prepared("kept");
  EXPECT_EQ(t.lines().back(), "PGRES_TUPLES_OK | 8");
}

TEST(PreparedStatementsTest, DeallocateThroughTheExtendedProtocolLikePsycopg) {
  Sluiced sluiced({.pool_size = 1});
  expect_same_as_direct(sluiced,
                        [](Transcript& t, PGconn*) {
                          t.prepare("_pg3_0", "SELECT 10");
                          t.prepare("_pg3_1", "SELECT 11");
                          t.exec_params("DEALLOCATE _pg3_0");
                          t.exec_prepared("_pg3_0");
                          t.exec_prepared("_pg3_1");
                          t.exec_params("DEALLOCATE _pg3_0");  // no longer exists
                          t.exec_params("deallocate prepare \"_pg3_1\";");
                          t.prepare("_pg3_0", "SELECT 12");  // the name is free again
                          t.exec_prepared("_pg3_0");
                          t.exec("BEGIN");
                          t.exec("SELECT 1/0");
                          t.exec_params("DEALLOCATE _pg3_0");  // refused in a failed transaction: it stays
                          t.exec("ROLLBACK");
                          t.exec_prepared("_pg3_0");
                        },
                        {"_pg3_0", "_pg3_1"});
}

TEST(PreparedStatementsTest, SessionModeLeavesStatementsOnTheSessionsServer) {
  Sluiced sluiced({.pool_size = 2, .pool_mode = "session"});
  expect_same_as_direct(sluiced,
                        [](Transcript& t, PGconn*) {
                          t.exec("PREPARE q(int) AS SELECT $1 * 3");
                          t.exec("EXECUTE q(5)");
                          t.prepare("p", "SELECT 'protocol'::text");
                          t.exec_prepared("p");
                          t.exec("SELECT name FROM pg_prepared_statements ORDER BY name");
                          t.exec("DEALLOCATE q");
                        },
                        {});
}

TEST(PreparedStatementsTest, ControlSocketCountsStatementsPerClientPoolAndServer) {
  Sluiced sluiced({.pool_size = 1});
  const PgConn conn = connect(sluiced.conninfo());
  Transcript t(conn.get());
  t.prepare("one", "SELECT 1");
  t.prepare("two", "SELECT 2");
  t.prepare("same_as_one", "SELECT 1");  // one definition, one server-side statement
  t.exec_prepared("two");

  const auto clients = ctltest::control(sluiced.control_socket(), {{"cmd", "clients"}});
  ASSERT_EQ(clients["clients"].size(), 1U) << clients.dump();
  EXPECT_EQ(clients["clients"][0]["prepared_statements"], 3) << clients.dump();
  const auto pools = ctltest::control(sluiced.control_socket(), {{"cmd", "pools"}});
  EXPECT_EQ(pools["pools"][0]["prepared_statements"], 2) << pools.dump();
  const auto servers = ctltest::control(sluiced.control_socket(), {{"cmd", "servers"}});
  ASSERT_EQ(servers["servers"].size(), 1U) << servers.dump();
  EXPECT_EQ(servers["servers"][0]["prepared_statements"], 2) << servers.dump();
}

}  // namespace
}  // namespace harness
