// Prepared statements that the schema leaves behind. Two clients prepare a query on a
// transaction-mode pool's two servers, another client changes the table (ALTER TABLE ADD COLUMN, or
// a type dropped and made again), and a new client runs the same query: first on one server (the
// other held by a hog), then again on the other, where only a copy parsed before the change is left.
// A new client connected directly parses after the change and gets its rows; through sluiced it
// must too, where it used to get PostgreSQL's "cached plan must not change result type" or "cache
// lookup failed for type N". Each driver runs the scenario directly and through sluiced, and the
// transcripts must match. The raw-protocol tests pin the retry's boundary: a batch that has had an
// effect before the stale Bind, or that runs inside a transaction block, gets PostgreSQL's error.
#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/raw_wire.h"
#include "tests/integration/scope_helpers.h"

#ifndef SLUICE_DRIVERS_DIR
#error "SLUICE_DRIVERS_DIR must name tests/drivers (CMakeLists.txt defines it)"
#endif

namespace harness {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPython = "/usr/bin/python3";  // Debian's: the drivers are Debian packages
constexpr const char* kJdbcJar = "/usr/share/java/postgresql.jar";

// The table, the statement and the schema change of a scenario, shared by the Python drivers
// (each names its placeholder first).
constexpr const char* kScenario = R"py(
host, port, db, scenario, t = sys.argv[1:6]
kind = scenario == 'type'
query = f'select * from {t} where ' + ('m = ' if kind else 'id = ') + placeholder
param = 'a' if kind else 1
setup = [f'drop table if exists {t}', f'drop type if exists {t}_mood', f"create type {t}_mood as enum ('a', 'b')",
         f'create table {t} (id int, m {t}_mood)', f"insert into {t} values (1, 'a')"] if kind else \
        [f'drop table if exists {t}', f'create table {t} (id int, val text)', f"insert into {t} values (1, 'x')"]
change = [f'drop type {t}_mood cascade', f"create type {t}_mood as enum ('a', 'b')",
          f'alter table {t} add column m {t}_mood', f"update {t} set m = 'a'"] if kind else \
         [f'alter table {t} add column note text']
)py";

// argv: host port dbname scenario (alter|type) table. The hogs hold a server each: the one the new
// client must not use is found by its backend pid (directly, hog1 keeps its own).
constexpr const char* kPsycopgHead = R"py(
import sys, psycopg
placeholder = '%s'
)py";
constexpr const char* kPsycopg = R"py(
def connect(**kw):
    return psycopg.connect(host=host, port=port, dbname=db, autocommit=True, **kw)
def rows(label, c):
    try:
        print(label, c.execute(query, [param]).fetchall())
    except psycopg.Error as e:
        print(label, 'ERROR', e.sqlstate)
def pid(c):
    return c.execute('select pg_backend_pid()').fetchone()[0]
ddl, hog1, hog2 = connect(), connect(), connect()
a1, a2, b = (connect(prepare_threshold=0) for _ in range(3))
for sql in setup: ddl.execute(sql)
a1.execute('begin'); rows('a1', a1); rows('a2', a2); a1.execute('commit')
for sql in change: ddl.execute(sql)
hog1.execute('begin'); held = pid(hog1)
rows('b', b)
hog1.execute('commit')
hog2.execute('begin'); pid(hog2); hog1.execute('begin')
first, second = (hog1, hog2) if pid(hog1) == held else (hog2, hog1)
first.execute('commit')
rows('b', b)
second.execute('commit')
)py";

constexpr const char* kAsyncpgHead = R"py(
import sys, asyncio, asyncpg
placeholder = '$1'
)py";
constexpr const char* kAsyncpg = R"py(
async def rows(label, c):
    try:
        print(label, [tuple(r) for r in await c.fetch(query, param)])
    except asyncpg.PostgresError as e:
        print(label, 'ERROR', e.sqlstate)
async def main():
    connect = lambda: asyncpg.connect(host=host, port=int(port), database=db)
    ddl, hog1, hog2, a1, a2, b = [await connect() for _ in range(6)]
    for sql in setup: await ddl.execute(sql)
    await a1.execute('begin'); await rows('a1', a1); await rows('a2', a2); await a1.execute('commit')
    for sql in change: await ddl.execute(sql)
    await hog1.execute('begin'); held = await hog1.fetchval('select pg_backend_pid()')
    await rows('b', b)
    await hog1.execute('commit')
    await hog2.execute('begin'); await hog2.fetchval('select pg_backend_pid()'); await hog1.execute('begin')
    first, second = (hog1, hog2) if await hog1.fetchval('select pg_backend_pid()') == held else (hog2, hog1)
    await first.execute('commit')
    await rows('b', b)
    await second.execute('commit')
asyncio.run(main())
)py";

struct Endpoint {
  std::string host;
  int port = 0;
};

enum class Driver { psycopg, asyncpg, jdbc };

std::string run_scenario(Driver driver, const Endpoint& at, const std::string& scenario,
                         const std::string& table) {
  std::vector<std::string> argv;
  const std::string port = std::to_string(at.port);
  switch (driver) {
    case Driver::psycopg:
    case Driver::asyncpg:
      argv = {kPython,
              "-E",
              "-s",
              "-c",
              driver == Driver::psycopg ? std::string(kPsycopgHead) + kScenario + kPsycopg
                                        : std::string(kAsyncpgHead) + kScenario + kAsyncpg,
              at.host,
              port,
              "postgres",
              scenario,
              table};
      break;
    case Driver::jdbc:
      argv = {"java",
              std::string(SLUICE_DRIVERS_DIR) + "/JdbcWorkload.java",
              "--jdbc-jar",
              kJdbcJar,
              "--host",
              at.host,
              "--port",
              port,
              "--dbname",
              "postgres",
              "--user",
              scope_test::os_user(),
              "--connect-properties",
              "prepareThreshold=1|stringtype=unspecified",
              "--stale-scenario",
              scenario,
              "--table",
              table};
      break;
  }
  const auto result = run_capture(argv, 120s);
  EXPECT_TRUE(result.succeeded()) << result.describe() << "\n" << result.err;
  return result.out;
}

struct Case {
  Driver driver;
  std::string scenario;
};

class StaleStatementsTest : public ::testing::TestWithParam<Case> {};

void PrintTo(const Case& c, std::ostream* out) { *out << static_cast<int>(c.driver) << " " << c.scenario; }

// How many stale-plan errors PostgreSQL has logged so far.
std::size_t stale_plan_errors() {
  const std::string log = postgres().log();
  std::size_t count = 0;
  for (const char* words : {"cached plan must not change result type", "cache lookup failed for type"}) {
    for (auto at = log.find(words); at != std::string::npos; at = log.find(words, at + 1)) ++count;
  }
  return count;
}

// The new client gets its rows, exactly as directly, and never an error. Its second run met the
// stale copy (PostgreSQL logged the error) and ran again.
TEST_P(StaleStatementsTest, NewClientGetsTodaysPlan) {
  const auto& [driver, scenario] = GetParam();
  const std::string table = "stale_" + scenario + "_" + std::to_string(static_cast<int>(driver));
  const std::string direct =
      run_scenario(driver, {postgres().socket_dir(), postgres().port()}, scenario, table);
  ASSERT_EQ(direct.find("ERROR"), std::string::npos) << "directly:\n" << direct;
  ASSERT_NE(direct.find("b "), std::string::npos) << "directly:\n" << direct;
  Sluiced sluiced({.pool_size = 2});
  const std::size_t errors_before = stale_plan_errors();
  EXPECT_EQ(run_scenario(driver, {sluiced.socket_dir(), sluiced.port()}, scenario, table), direct);
  EXPECT_GT(stale_plan_errors(), errors_before) << "the stale copy was never met: the test lost its point";
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  static const char* const kDrivers[] = {"Psycopg", "Asyncpg", "Jdbc"};
  return kDrivers[static_cast<int>(info.param.driver)] +
         std::string(info.param.scenario == "alter" ? "AlterTable" : "DropType");
}

INSTANTIATE_TEST_SUITE_P(Drivers, StaleStatementsTest,
                         ::testing::Values(Case{Driver::psycopg, "alter"}, Case{Driver::psycopg, "type"},
                                           Case{Driver::asyncpg, "alter"}, Case{Driver::asyncpg, "type"},
                                           Case{Driver::jdbc, "alter"}, Case{Driver::jdbc, "type"}),
                         case_name);

// Raw protocol, one server: the exact replies a batch gets.

std::string message(char type, const std::string& body) {
  return std::string(1, type) + be32(body.size() + 4) + body;
}
std::string parse(const std::string& name, const std::string& sql) {
  return message('P', name + '\0' + sql + '\0' + std::string(2, '\0'));
}
std::string bind(const std::string& statement) {
  return message('B', std::string(1, '\0') + statement + '\0' + std::string(6, '\0'));  // no formats, params
}
std::string execute() { return message('E', std::string(1, '\0') + std::string(4, '\0')); }
std::string sync() { return message('S', {}); }

// Every reply up to the batch's ReadyForQuery: its type, and an error's SQLSTATE.
std::string replies(RawClient& client) {
  std::string seen;
  for (;;) {
    const auto reply = client.read_message();
    if (!reply) return seen + " <nothing more>";
    seen += reply->type;
    if (reply->type == 'E') seen += "(" + error_fields(*reply)['C'] + ")";
    if (reply->type == 'Z') return seen + reply->payload;
  }
}

constexpr const char* kQuery = "SELECT * FROM stale_raw";

class StaleBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    exec_ok(
        direct_,
        "DROP TABLE IF EXISTS stale_raw; CREATE TABLE stale_raw (id int); INSERT INTO stale_raw VALUES (1)");
  }
  // Both servers hold a copy of "s" parsed before the table changes; `client` parses it after the
  // change on one server, and is sent to the other from then on: its Binds meet the stale copy.
  // Directly, its statement would be today's.
  void stale_copy_ahead(RawClient& client) {
    RawClient a1(sluiced_.socket_path());
    RawClient a2(sluiced_.socket_path());
    for (RawClient* c : {&a1, &a2, &client}) ASSERT_EQ(c->login(), "I");
    a1.send(query_message("BEGIN"));
    ASSERT_EQ(replies(a1), "CZT");
    a1.send(parse("s", kQuery) + bind("s") + execute() + sync());
    ASSERT_EQ(replies(a1), "12DCZT");
    a2.send(parse("s", kQuery) + bind("s") + execute() + sync());
    ASSERT_EQ(replies(a2), "12DCZI");
    a1.send(query_message("COMMIT"));
    ASSERT_EQ(replies(a1), "CZI");
    exec_ok(direct_, "ALTER TABLE stale_raw ADD COLUMN note text");
    exec_ok(hog1_, "BEGIN");
    const std::string held = scalar(hog1_, "SELECT pg_backend_pid()");
    client.send(parse("s", kQuery) + sync());
    ASSERT_EQ(replies(client), "1ZI");
    exec_ok(hog1_, "COMMIT");
    exec_ok(hog2_, "BEGIN");
    scalar(hog2_, "SELECT pg_backend_pid()");
    exec_ok(hog1_, "BEGIN");
    exec_ok(scalar(hog1_, "SELECT pg_backend_pid()") == held ? hog1_ : hog2_, "COMMIT");
  }
  Sluiced sluiced_{{.pool_size = 2}};
  PgConn direct_ = connect(postgres().conninfo());
  PgConn hog1_ = connect(sluiced_.conninfo());  // hold a server each, inside a transaction
  PgConn hog2_ = connect(sluiced_.conninfo());
};

// The Bind is the batch's first request: the copy is parsed anew and the batch runs again unseen.
TEST_F(StaleBatchTest, BindFirstInBatchRunsAgain) {
  RawClient client(sluiced_.socket_path());
  stale_copy_ahead(client);
  client.send(bind("s") + execute() + sync());
  EXPECT_EQ(replies(client), "2DCZI");
  client.send(bind("s") + execute() + sync());
  EXPECT_EQ(replies(client), "2DCZI");
}

// An Execute ran before the stale Bind: running the batch again would run it twice. The client
// gets PostgreSQL's error where PostgreSQL puts it, and the next use is parsed anew.
TEST_F(StaleBatchTest, AfterAnEffectTheErrorShows) {
  RawClient client(sluiced_.socket_path());
  stale_copy_ahead(client);
  client.send(parse("", "INSERT INTO stale_raw VALUES (2)") + bind("") + execute() + bind("s") + execute() +
              sync());
  EXPECT_EQ(replies(client), "12CE(0A000)ZI");
  EXPECT_EQ(scalar(direct_, "SELECT count(*) FROM stale_raw WHERE id = 2"), "0") << "the batch rolled back";
  client.send(bind("s") + execute() + sync());
  EXPECT_EQ(replies(client), "2DCZI");
}

// Inside a transaction block nothing runs again: the block is aborted, as PostgreSQL does.
TEST_F(StaleBatchTest, InsideATransactionTheErrorShows) {
  RawClient client(sluiced_.socket_path());
  stale_copy_ahead(client);
  client.send(query_message("BEGIN"));
  EXPECT_EQ(replies(client), "CZT");
  client.send(bind("s") + execute() + sync());
  EXPECT_EQ(replies(client), "E(0A000)ZE");
  client.send(query_message("ROLLBACK"));
  EXPECT_EQ(replies(client), "CZI");
  client.send(bind("s") + execute() + sync());
  EXPECT_EQ(replies(client), "2DCZI");
}

}  // namespace
}  // namespace harness
