// The driver matrix: real PostgreSQL drivers, each with its default settings, run one workload
// (tests/drivers/README.md) directly against PostgreSQL and through sluiced, and must see exactly
// the same results. Eight concurrent clients share a transaction-mode pool of two, so a client's
// transactions land on either server connection, and the named prepared statements that psycopg 3,
// pgjdbc, asyncpg and node-pg create by default (and libpq's PQprepare, and pgbench -M prepared)
// must follow each client from one server connection to the next. Session mode is the control.
//
// Each workload prints a deterministic transcript. Checked, for every driver:
//   - directly against PostgreSQL it is exactly expected_transcript() (else the workload or the
//     driver is at fault, not sluiced: the test says so and stops);
//   - through sluiced it is byte for byte the direct one, and the program exits 0;
//   - after either run, PostgreSQL itself (read directly) holds exactly the committed rows;
//   - in either run, PostgreSQL executed named prepared statements (its log says "execute <name>")
//     for the drivers that prepare, and none for psycopg2: the test exercises what it claims to.
// A missing driver fails the test, naming the Debian package; scripts/install-deps.sh installs them.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"
#include "tests/integration/tls_helpers.h"

#ifndef SLUICE_DRIVERS_DIR
#error "SLUICE_DRIVERS_DIR must name tests/drivers (CMakeLists.txt defines it)"
#endif
#ifndef SLUICE_NODE_PG_DIR
#error "SLUICE_NODE_PG_DIR must name install-deps.sh's node-pg directory (CMakeLists.txt defines it)"
#endif

namespace harness {
namespace {

using std::chrono::seconds;

constexpr int kClients = 8;
constexpr int kIterations = 100;
constexpr int kPoolSize = 2;  // in both modes: 8 clients, 2 server connections
// A driver program takes a few seconds, a pgbench run under one: these are for hangs.
constexpr std::chrono::milliseconds kRunTimeout = seconds(60);
constexpr std::chrono::milliseconds kPgbenchTimeout = seconds(30);
constexpr std::chrono::milliseconds kProbeTimeout = seconds(30);
constexpr const char* kDatabase = "driver_matrix";  // logs every statement (log_statement 'all')
constexpr const char* kTable = "driver_matrix";
constexpr const char* kTableColumns = "id int PRIMARY KEY, client int NOT NULL, val text";
constexpr const char* kPython = "/usr/bin/python3";  // Debian's: the drivers are Debian packages
constexpr const char* kJdbcJar = "/usr/share/java/postgresql.jar";
constexpr std::size_t kTailLines = 30;

// Where a workload connects: the socket <host>/.s.PGSQL.<port>.
struct Endpoint {
  std::string host;
  int port = 0;
};

Endpoint direct_endpoint() { return {postgres().socket_dir(), postgres().port()}; }
Endpoint endpoint_of(const Sluiced& sluiced) { return {sluiced.socket_dir(), sluiced.port()}; }

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string tail(const std::string& text, std::size_t count = kTailLines) {
  const std::vector<std::string> lines = split_lines(text);
  std::string out;
  for (std::size_t i = lines.size() > count ? lines.size() - count : 0; i < lines.size(); ++i) {
    out += "    " + lines[i] + "\n";
  }
  return out;
}

// Where two transcripts first differ, with context; nullopt when they are the same.
std::optional<std::string> difference(const std::string& expected, const std::string& actual) {
  if (expected == actual) return std::nullopt;
  const std::vector<std::string> want = split_lines(expected);
  const std::vector<std::string> got = split_lines(actual);
  std::size_t at = 0;
  while (at < want.size() && at < got.size() && want[at] == got[at]) ++at;
  std::ostringstream out;
  out << "the transcripts differ from line " << at + 1 << " on (expected " << want.size() << " lines, got "
      << got.size() << ")\n";
  const std::size_t from = at >= 3 ? at - 3 : 0;
  for (std::size_t i = from; i < at; ++i) out << "      same:     " << want[i] << "\n";
  for (std::size_t i = at; i < at + 3; ++i) {
    if (i < want.size()) out << "      expected: " << want[i] << "\n";
    if (i < got.size()) out << "      got:      " << got[i] << "\n";
  }
  return out.str();
}

// ---- the transcript every driver program must print (tests/drivers/README.md) ----

// Per client: inserts base+i in a transaction that commits unless i % 25 == 24.
int base_id(int client) { return (client + 1) * 100000; }
bool commits(int iteration) { return iteration % 25 != 24; }

// What PostgreSQL holds after a run: "<rows> <sum of ids>", as FreshTable::stored_rows() reads it.
std::string expected_stored() {
  long long rows = 0;
  long long ids = 0;
  for (int c = 0; c < kClients; ++c) {
    for (int i = 0; i < kIterations; ++i) {
      if (!commits(i)) continue;
      ++rows;
      ids += base_id(c) + i;
    }
  }
  return std::to_string(rows) + " " + std::to_string(ids);
}

std::string expected_transcript() {
  // timestamptz '2024-02-29 23:30:00+00' + n * interval '45 minutes', for n = 1, 2, 3
  static constexpr std::array<const char*, 3> kAt = {"2024-03-01T00:15:00Z", "2024-03-01T01:00:00Z",
                                                     "2024-03-01T01:45:00Z"};
  std::ostringstream out;
  out << "driver-matrix clients=" << kClients << " iterations=" << kIterations << "\n";
  long long total_rows = 0;
  long long total_ids = 0;
  for (int c = 0; c < kClients; ++c) {
    long long rows = 0;
    long long ids = 0;
    for (int i = 0; i < kIterations; ++i) {
      const std::string at = "c" + std::to_string(c) + " i" + std::to_string(i) + " ";
      const std::string val = "c" + std::to_string(c) + "-i" + std::to_string(i);
      out << at << "sum=" << i + c << " quotient=" << 1000 / (i + 1)
          << (commits(i) ? " commit val=" + val : std::string(" rollback val=NULL")) << "\n";
      if (commits(i)) {
        ++rows;
        ids += base_id(c) + i;
      }
      for (int n = 1; n <= 1 + i % 3; ++n) {
        const int hundredths = n * (c + 1) * 25;  // round(n * (c + 1) / 4.0, 2)
        std::array<char, 32> quarter{};
        std::snprintf(quarter.data(), quarter.size(), "%d.%02d", hundredths / 100, hundredths % 100);
        out << at << "row n=" << n << " label=row " << n << " quarter=" << quarter.data()
            << " even=" << (n % 2 == 0 ? "t" : "f")
            << " maybe=" << (n % 3 == 0 ? std::string("NULL") : std::to_string(n * 10))
            << " at=" << kAt.at(n - 1) << "\n";
      }
      switch (i % 25) {
        case 10:
          out << at << "error-in-transaction sqlstate=22012 val=NULL\n";
          break;
        case 16:
          out << at << "error-outside-transaction sqlstate=22012\n";
          break;
        case 20:
          out << at << "unique-violation sqlstate=23505 val=" << val << "\n";
          break;
        default:
          break;
      }
    }
    out << "c" << c << " end rows=" << rows << " ids=" << ids << "\n";
    total_rows += rows;
    total_ids += ids;
  }
  out << "total rows=" << total_rows << " ids=" << total_ids << "\n";
  return out.str();
}

// The database the workloads run in, made once per test binary. It logs every statement, so that
// PostgreSQL's log tells which prepared statements were executed.
void ensure_driver_database() {
  static bool made = false;
  if (made) return;
  scope_test::ensure_database(kDatabase);
  exec_ok(connect(postgres().conninfo()),
          std::string("ALTER DATABASE ") + kDatabase + " SET log_statement = 'all'");
  made = true;
}

// A fresh table for one run in kDatabase, made and dropped directly (not through sluiced).
class FreshTable {
 public:
  FreshTable() {
    ensure_driver_database();
    direct_ = connect(postgres().conninfo(kDatabase));
    PQsetNoticeProcessor(
        direct_.get(), [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    exec_ok(direct_, std::string("DROP TABLE IF EXISTS ") + kTable);
    exec_ok(direct_, std::string("CREATE TABLE ") + kTable + " (" + kTableColumns + ")");
  }
  ~FreshTable() {
    try {
      exec_ok(direct_, std::string("DROP TABLE IF EXISTS ") + kTable);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "dropping " << kTable << ": " << e.what();
    }
  }
  FreshTable(const FreshTable&) = delete;
  FreshTable& operator=(const FreshTable&) = delete;

  // "<rows> <sum of ids>", read directly from PostgreSQL.
  [[nodiscard]] std::string stored_rows() const {
    return scalar(direct_, std::string("SELECT count(*) || ' ' || coalesce(sum(id), 0) FROM ") + kTable);
  }

 private:
  PgConn direct_;
};

// What PostgreSQL's log says was executed from byte `from` on: its "execute <name>: ..." lines
// (log_statement 'all') of named prepared statements, not of the unnamed one.
struct NamedExecutes {
  std::size_t count = 0;
  std::vector<std::string> names;  // the first few distinct ones, for messages
};

NamedExecutes named_executes(std::size_t from) {
  static const std::string kExecute = "LOG:  execute ";
  const std::string log = postgres().log();
  NamedExecutes seen;
  for (std::size_t at = log.find(kExecute, from); at != std::string::npos; at = log.find(kExecute, at + 1)) {
    const std::size_t start = at + kExecute.size();
    const std::string name = log.substr(start, log.find(':', start) - start);
    if (name == "<unnamed>") continue;
    ++seen.count;
    if (seen.names.size() < 5 && std::find(seen.names.begin(), seen.names.end(), name) == seen.names.end()) {
      seen.names.push_back(name);
    }
  }
  return seen;
}

std::string describe(const NamedExecutes& seen) {
  std::string text = std::to_string(seen.count) + " executions of named prepared statements";
  for (std::size_t i = 0; i < seen.names.size(); ++i) text += (i == 0 ? " (" : ", ") + seen.names[i];
  return text + (seen.names.empty() ? "" : ", ...)");
}

// Named prepared statements ran (or, for a driver that prepares none, none did).
void expect_named_executes(const NamedExecutes& seen, bool prepares, const std::string& what) {
  if (prepares) {
    EXPECT_GT(seen.count, 0U) << what << ": PostgreSQL executed no named prepared statement";
  } else {
    EXPECT_EQ(seen.count, 0U) << what << ": PostgreSQL executed " << describe(seen);
  }
}

// ---- the driver programs ----

struct DriverProgram {
  std::string name;
  bool prepares = true;                // creates named server-side prepared statements by default
  std::vector<std::string> command;    // the connection arguments follow
  std::vector<std::string> env;        // added to the environment
  std::string (*missing)() = nullptr;  // what is not installed, or ""
  // How it is given a password: every driver but pgjdbc reads PGPASSWORD, as libpq does.
  std::vector<std::string> (*password_arguments)(const std::string& password) = nullptr;
};

std::string in_drivers_dir(const std::string& file) { return std::string(SLUICE_DRIVERS_DIR) + "/" + file; }

// Runs a probe command; "" when it exited 0, else why not.
std::string probe(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
  try {
    const Captured result = run_capture(argv, kProbeTimeout, env);
    if (result.succeeded()) return "";
    return result.describe() + "\n" + tail(result.err, 5);
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string missing_python_module(const std::string& module, const std::string& package) {
  const std::string why = probe({kPython, "-E", "-s", "-c", "import " + module});
  if (why.empty()) return "";
  return "Debian package " + package + " is missing (" + kPython + " cannot import " + module +
         "; scripts/install-deps.sh installs it): " + why;
}

std::string missing_jdbc() {
  if (!std::filesystem::exists(kJdbcJar)) {
    return std::string("Debian package libpostgresql-jdbc-java is missing (no ") + kJdbcJar +
           "; scripts/install-deps.sh installs it)";
  }
  const std::string why = probe({"java", "-version"});
  if (why.empty()) return "";
  return "Debian package default-jre-headless is missing (no working java; scripts/install-deps.sh "
         "installs it): " +
         why;
}

// node-pg's directory for NODE_PATH: Debian's when the package is installed, else the copy that
// scripts/install-deps.sh unpacks where apt cannot install it (a nodejs that is not Debian's).
std::string node_modules_dir() {
  for (const char* prefix : {"", SLUICE_NODE_PG_DIR}) {
    std::string dir = std::string(prefix) + "/usr/share/nodejs";
    if (std::filesystem::exists(dir + "/pg/package.json")) return dir;
  }
  return "";
}

std::string missing_node_pg() {
  if (const std::string why = probe({"node", "--version"}); !why.empty()) {
    return "Debian package nodejs is missing (no working node; scripts/install-deps.sh installs it): " + why;
  }
  const std::string dir = node_modules_dir();
  if (dir.empty()) {
    return std::string("Debian package node-pg is missing (neither /usr/share/nodejs/pg nor ") +
           SLUICE_NODE_PG_DIR + "/usr/share/nodejs/pg; scripts/install-deps.sh installs or unpacks it)";
  }
  if (const std::string why = probe({"node", "-e", "require('pg')"}, {"NODE_PATH=" + dir}); !why.empty()) {
    return "node-pg in " + dir + " does not load (a dependency missing? scripts/install-deps.sh): " + why;
  }
  return "";
}

DriverProgram psycopg3() {
  return {.name = "psycopg 3",
          .prepares = true,
          .command = {kPython, "-E", "-s", in_drivers_dir("psycopg3_workload.py")},
          .env = {},
          .missing = [] { return missing_python_module("psycopg", "python3-psycopg"); }};
}

DriverProgram psycopg2() {
  return {.name = "psycopg2",
          .prepares = false,  // interpolates client-side, simple query protocol
          .command = {kPython, "-E", "-s", in_drivers_dir("psycopg2_workload.py")},
          .env = {},
          .missing = [] { return missing_python_module("psycopg2", "python3-psycopg2"); }};
}

DriverProgram asyncpg() {
  return {.name = "asyncpg",
          .prepares = true,
          .command = {kPython, "-E", "-s", in_drivers_dir("asyncpg_workload.py")},
          .env = {},
          .missing = [] { return missing_python_module("asyncpg", "python3-asyncpg"); }};
}

DriverProgram jdbc() {
  return {.name = "pgjdbc",
          .prepares = true,
          .command = {"java", in_drivers_dir("JdbcWorkload.java"), "--jdbc-jar", kJdbcJar},
          .env = {},
          .missing = missing_jdbc,
          .password_arguments = [](const std::string& password) {
            return std::vector<std::string>{"--connect-properties", "password=" + password};
          }};
}

DriverProgram node_pg() {
  return {.name = "node-pg",
          .prepares = true,
          .command = {"node", in_drivers_dir("node_pg_workload.js")},
          .env = {"NODE_PATH=" + node_modules_dir()},
          .missing = missing_node_pg};
}

// One run of a driver program against a fresh table.
struct Run {
  Captured result;
  std::string stored;   // FreshTable::stored_rows() afterwards
  NamedExecutes named;  // what PostgreSQL executed meanwhile
};

// `password`: given to the driver its own way (PGPASSWORD, or its password_arguments).
Run run_program(const DriverProgram& program, const Endpoint& to, const std::string& password = "") {
  const FreshTable table;
  const std::size_t log_from = postgres().log().size();
  std::vector<std::string> argv = program.command;
  std::vector<std::string> env = program.env;
  if (!password.empty()) {
    env.push_back("PGPASSWORD=" + password);
    if (program.password_arguments != nullptr) {
      const auto arguments = program.password_arguments(password);
      argv.insert(argv.end(), arguments.begin(), arguments.end());
    }
  }
  const std::vector<std::string> connection = {"--host",       to.host,
                                               "--port",       std::to_string(to.port),
                                               "--dbname",     kDatabase,
                                               "--user",       scope_test::os_user(),
                                               "--clients",    std::to_string(kClients),
                                               "--iterations", std::to_string(kIterations)};
  argv.insert(argv.end(), connection.begin(), connection.end());
  Run run{.result = run_capture(argv, kRunTimeout, env), .stored = {}, .named = {}};
  run.stored = table.stored_rows();
  run.named = named_executes(log_from);
  return run;
}

std::string describe(const Run& run) {
  return run.result.describe() + "; stderr (last lines):\n" + tail(run.result.err);
}

// The direct run of each program, once per test binary: it depends on nothing the tests vary.
const Run& direct_run(const DriverProgram& program) {
  static std::map<std::string, Run> runs;
  auto found = runs.find(program.name);
  if (found == runs.end() || !found->second.result.succeeded()) {
    found = runs.insert_or_assign(program.name, run_program(program, direct_endpoint())).first;
  }
  return found->second;
}

// The password-method variant: the workload's role gets a password (PostgreSQL, with trust, ignores
// it), its secret (a SCRAM verifier; for md5 an md5 hash) goes into auth.file, and sluiced asks for
// it with `auth_type`.
struct PasswordLogin {
  std::string auth_type;  // "scram-sha-256" or "md5"
  std::string password;
};

// `overrides`: more of the config (tls_overrides).
Sluiced sluiced_for(const std::string& pool_mode, const std::optional<PasswordLogin>& login,
                    nlohmann::json overrides = nlohmann::json::object()) {
  if (login) overrides["auth"] = {{"type", login->auth_type}, {"file", "users.txt"}};
  auto config = default_config(
      {.dbname = kDatabase, .pool_size = kPoolSize, .pool_mode = pool_mode, .overrides = overrides});
  if (login) {
    const PgConn admin = connect(postgres().conninfo());
    exec_ok(admin, "SET password_encryption = '" + login->auth_type + "'");  // md5: an md5 hash
    exec_ok(admin, "ALTER ROLE \"" + scope_test::os_user() + "\" PASSWORD '" + login->password + "'");
    const std::string secret =
        scalar(admin, "SELECT rolpassword FROM pg_authid WHERE rolname = '" + scope_test::os_user() + "'");
    std::ofstream(config.dir.path() + "/users.txt")
        << "\"" << scope_test::os_user() << "\" \"" << secret << "\"\n";
  }
  return Sluiced(std::move(config));
}

// The password is really asked for: without it libpq is refused.
void expect_password_required(const Sluiced& sluiced) {
  const PgConn conn = try_connect(sluiced.conninfo(kDatabase) + " password=wrong");
  EXPECT_NE(PQstatus(conn.get()), CONNECTION_OK) << "sluiced let a wrong password in";
  EXPECT_NE(std::string(PQerrorMessage(conn.get())).find("password authentication failed"), std::string::npos)
      << PQerrorMessage(conn.get());
}

// Directly against PostgreSQL the workload and the driver themselves must be right, or no run
// through sluiced means anything: false (and the test failed) when they are not.
bool direct_run_is_right(const DriverProgram& program) {
  if (const std::string missing = program.missing(); !missing.empty()) {
    ADD_FAILURE() << program.name << ": " << missing;
    return false;
  }
  const Run& direct = direct_run(program);
  if (!direct.result.succeeded()) {
    ADD_FAILURE() << program.name
                  << " failed directly against PostgreSQL (not sluiced's doing): " << describe(direct);
    return false;
  }
  if (const auto diff = difference(expected_transcript(), direct.result.out)) {
    ADD_FAILURE() << program.name
                  << " directly against PostgreSQL does not print the expected transcript (the "
                  << "workload or the driver is at fault, not sluiced): " << *diff;
    return false;
  }
  if (direct.stored != expected_stored()) {
    ADD_FAILURE() << "rows in PostgreSQL after the direct run: " << direct.stored << ", expected "
                  << expected_stored();
    return false;
  }
  expect_named_executes(direct.named, program.prepares, program.name + " directly against PostgreSQL");
  return true;
}

// Through sluiced at `to`: the same as directly, byte for byte. `how` says how it was reached.
// `password`: the one the driver logs in with, if sluiced asks for one.
void check_pooled(const DriverProgram& program, const Endpoint& to, const std::string& how,
                  const std::string& password = "") {
  const Run pooled = run_program(program, to, password);
  EXPECT_TRUE(pooled.result.succeeded())
      << program.name << " through sluiced (" << how << "): " << describe(pooled);
  if (const auto diff = difference(direct_run(program).result.out, pooled.result.out)) {
    ADD_FAILURE() << program.name << " through sluiced (" << how
                  << ") saw other results than directly: " << *diff;
  }
  EXPECT_EQ(pooled.stored, expected_stored()) << "rows in PostgreSQL after the run through sluiced";
  // Through a pooler this names the pooler's statements on its server connections, whatever they
  // are called: still named ones, so the run really exercised sluiced's prepared statements.
  expect_named_executes(pooled.named, program.prepares, program.name + " through sluiced (" + how + ")");
}

void check_driver(const DriverProgram& program, const std::string& pool_mode,
                  const std::optional<PasswordLogin>& login = std::nullopt) {
  if (!direct_run_is_right(program)) return;
  Sluiced sluiced = sluiced_for(pool_mode, login);
  if (login) expect_password_required(sluiced);
  check_pooled(
      program, endpoint_of(sluiced),
      pool_mode + " mode, pool_size " + std::to_string(kPoolSize) + (login ? ", " + login->auth_type : ""),
      login ? login->password : "");
}

// The driver over sluiced's TCP listener with tls.mode "require", verifying sluiced's certificate
// and its name (verify-full) against the test's CA: libpq (psycopg), asyncpg and node-pg read
// PGSSLMODE (node-pg's "verify-full" is Node's own verification, which NODE_EXTRA_CA_CERTS feeds);
// pgjdbc takes connection properties.
// `login`: a password method too.
void check_driver_over_tls(DriverProgram program, const std::optional<PasswordLogin>& login = std::nullopt) {
  if (!direct_run_is_right(program)) return;
  const TestPki pki;
  const int port = free_tcp_port();
  Sluiced sluiced = sluiced_for("transaction", login, tls_overrides(pki, "require", port));
  if (login) expect_password_required(sluiced);
  program.env.insert(program.env.end(), {"PGSSLMODE=verify-full", "PGSSLROOTCERT=" + pki.ca_cert(),
                                         "NODE_EXTRA_CA_CERTS=" + pki.ca_cert()});
  if (program.name == jdbc().name) {
    program.command.insert(
        program.command.end(),
        {"--connect-properties", "ssl=true|sslmode=verify-full|sslrootcert=" + pki.ca_cert()});
  }
  // "localhost": the name verify-full checks; tls.mode "require" refuses any login without TLS.
  check_pooled(program, {"localhost", port},
               "transaction mode over TLS, verify-full" + (login ? ", " + login->auth_type : ""),
               login ? login->password : "");
}

TEST(DriverMatrix, Psycopg3TransactionMode) { check_driver(psycopg3(), "transaction"); }
TEST(DriverMatrix, Psycopg3SessionMode) { check_driver(psycopg3(), "session"); }
TEST(DriverMatrix, Psycopg2TransactionMode) { check_driver(psycopg2(), "transaction"); }
TEST(DriverMatrix, Psycopg2SessionMode) { check_driver(psycopg2(), "session"); }
TEST(DriverMatrix, AsyncpgTransactionMode) { check_driver(asyncpg(), "transaction"); }
TEST(DriverMatrix, AsyncpgSessionMode) { check_driver(asyncpg(), "session"); }
TEST(DriverMatrix, JdbcTransactionMode) { check_driver(jdbc(), "transaction"); }
TEST(DriverMatrix, JdbcSessionMode) { check_driver(jdbc(), "session"); }
TEST(DriverMatrix, NodePgTransactionMode) { check_driver(node_pg(), "transaction"); }
TEST(DriverMatrix, NodePgSessionMode) { check_driver(node_pg(), "session"); }
TEST(DriverMatrix, Psycopg3OverTls) { check_driver_over_tls(psycopg3()); }
TEST(DriverMatrix, Psycopg2OverTls) { check_driver_over_tls(psycopg2()); }
TEST(DriverMatrix, AsyncpgOverTls) { check_driver_over_tls(asyncpg()); }
TEST(DriverMatrix, JdbcOverTls) { check_driver_over_tls(jdbc()); }
TEST(DriverMatrix, NodePgOverTls) { check_driver_over_tls(node_pg()); }

// Password authentication through sluiced: each driver logs its eight clients in with SCRAM
// against the verifier in auth.file, then runs the same workload.
const PasswordLogin kScram{"scram-sha-256", "matrix scram password"};
TEST(DriverMatrix, Psycopg3Scram) { check_driver(psycopg3(), "transaction", kScram); }
TEST(DriverMatrix, Psycopg2Scram) { check_driver(psycopg2(), "transaction", kScram); }
TEST(DriverMatrix, AsyncpgScram) { check_driver(asyncpg(), "transaction", kScram); }
TEST(DriverMatrix, JdbcScram) { check_driver(jdbc(), "transaction", kScram); }
TEST(DriverMatrix, NodePgScram) { check_driver(node_pg(), "transaction", kScram); }
// Both at once: psycopg (libpq) takes SCRAM-SHA-256-PLUS over TLS by default, asyncpg (which does
// not implement channel binding) plain SCRAM-SHA-256 over TLS.
TEST(DriverMatrix, Psycopg3ScramOverTls) { check_driver_over_tls(psycopg3(), kScram); }
TEST(DriverMatrix, Psycopg2ScramOverTls) { check_driver_over_tls(psycopg2(), kScram); }
TEST(DriverMatrix, AsyncpgScramOverTls) { check_driver_over_tls(asyncpg(), kScram); }
TEST(DriverMatrix, JdbcScramOverTls) { check_driver_over_tls(jdbc(), kScram); }
TEST(DriverMatrix, NodePgScramOverTls) { check_driver_over_tls(node_pg(), kScram); }
// md5 (legacy), each driver, over TLS: the role's secret an md5 hash.
const PasswordLogin kMd5{"md5", "matrix md5 password"};
TEST(DriverMatrix, Psycopg3Md5OverTls) { check_driver_over_tls(psycopg3(), kMd5); }
TEST(DriverMatrix, Psycopg2Md5OverTls) { check_driver_over_tls(psycopg2(), kMd5); }
TEST(DriverMatrix, AsyncpgMd5OverTls) { check_driver_over_tls(asyncpg(), kMd5); }
TEST(DriverMatrix, JdbcMd5OverTls) { check_driver_over_tls(jdbc(), kMd5); }
TEST(DriverMatrix, NodePgMd5OverTls) { check_driver_over_tls(node_pg(), kMd5); }

// ---- libpq: PQprepare / PQexecPrepared / PQdescribePrepared, in this process ----

std::string sqlstate_of(const PGresult* result) {
  const char* code = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return code != nullptr ? code : "?";
}

// A result as one transcript word: "rows=a,b;c,d", "ok <command tag>" or "sqlstate=XXXXX".
std::string outcome(const PgResult& result) {
  if (!result) return "no result";
  switch (PQresultStatus(result.get())) {
    case PGRES_TUPLES_OK: {
      std::string rows = "rows=";
      for (int row = 0; row < PQntuples(result.get()); ++row) {
        if (row > 0) rows += ";";
        for (int col = 0; col < PQnfields(result.get()); ++col) {
          if (col > 0) rows += ",";
          rows += PQgetisnull(result.get(), row, col) != 0 ? "NULL" : PQgetvalue(result.get(), row, col);
        }
      }
      return rows;
    }
    case PGRES_COMMAND_OK:
      return std::string("ok ") + PQcmdStatus(result.get());
    default:
      return "sqlstate=" + sqlstate_of(result.get());
  }
}

PgResult exec_prepared(const PgConn& conn, const char* name, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& param : params) values.push_back(param.c_str());
  return PgResult(
      PQexecPrepared(conn.get(), name, static_cast<int>(values.size()), values.data(), nullptr, nullptr, 0));
}

PgResult prepare(const PgConn& conn, const char* name, const std::string& sql) {
  return PgResult(PQprepare(conn.get(), name, sql.c_str(), 0, nullptr));
}

std::string describe_prepared(const PgConn& conn, const char* name) {
  const PgResult result(PQdescribePrepared(conn.get(), name));
  if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) return outcome(result);
  std::string text = "params=" + std::to_string(PQnparams(result.get()));
  for (int i = 0; i < PQnparams(result.get()); ++i) {
    text += " $" + std::to_string(i + 1) + ":" + std::to_string(PQparamtype(result.get(), i));
  }
  text += " fields=" + std::to_string(PQnfields(result.get()));
  for (int i = 0; i < PQnfields(result.get()); ++i) {
    text += std::string(" ") + PQfname(result.get(), i) + ":" + std::to_string(PQftype(result.get(), i));
  }
  return text;
}

// One libpq client's part: every client prepares "stmt1" with a text of its own, so a statement
// executed on the wrong server connection answers for the wrong client.
void libpq_client(const std::string& conninfo, int c, std::vector<std::string>& lines) {
  const PgConn conn = connect(conninfo);
  const std::string me = "c" + std::to_string(c) + " ";
  const std::string multiplier = std::to_string(c + 1);
  lines.push_back(me + "prepare stmt1 " +
                  outcome(prepare(conn, "stmt1",
                                  "SELECT $1::int * " + multiplier + " AS product, 'client " +
                                      std::to_string(c) + "'::text AS who")));
  lines.push_back(
      me + "prepare insert " +
      outcome(prepare(conn, "insert",
                      std::string("INSERT INTO ") + kTable + " (id, client, val) VALUES ($1, $2, $3)")));
  lines.push_back(
      me + "prepare get " +
      outcome(prepare(conn, "get", std::string("SELECT val, client FROM ") + kTable + " WHERE id = $1")));
  lines.push_back(me + "describe stmt1 " + describe_prepared(conn, "stmt1"));
  lines.push_back(me + "describe insert " + describe_prepared(conn, "insert"));
  lines.push_back(me + "describe get " + describe_prepared(conn, "get"));

  for (int i = 0; i < kIterations; ++i) {
    const std::string at = me + "i" + std::to_string(i) + " ";
    const int phase = i % 25;
    const std::string id = std::to_string(base_id(c) + i);
    lines.push_back(at + "stmt1 " + outcome(exec_prepared(conn, "stmt1", {std::to_string(i)})));
    exec_ok(conn, "BEGIN");
    std::string val = "c" + std::to_string(c);
    val += "-i" + std::to_string(i);
    std::string inserted =
        at + "insert " + outcome(exec_prepared(conn, "insert", {id, std::to_string(c), val}));
    exec_ok(conn, commits(i) ? "COMMIT" : "ROLLBACK");
    inserted += commits(i) ? " commit" : " rollback";
    lines.push_back(inserted);
    lines.push_back(at + "get " + outcome(exec_prepared(conn, "get", {id})));
    if (i == 24) {  // prepared inside a transaction that rolls back: PostgreSQL keeps it all the same
      exec_ok(conn, "BEGIN");
      lines.push_back(at + "prepare kept " +
                      outcome(prepare(conn, "kept", "SELECT $1::int - " + multiplier)));
      exec_ok(conn, "ROLLBACK");
    }
    if (i == 30) {  // prepared inside a committed transaction
      exec_ok(conn, "BEGIN");
      lines.push_back(at + "prepare late " +
                      outcome(prepare(conn, "late", "SELECT $1::text || ' late " + std::to_string(c) + "'")));
      exec_ok(conn, "COMMIT");
    }
    if (i > 24 && phase == 7) lines.push_back(at + "kept " + outcome(exec_prepared(conn, "kept", {id})));
    if (i > 30 && phase == 3) lines.push_back(at + "late " + outcome(exec_prepared(conn, "late", {id})));
    switch (phase) {
      case 5:  // a bad parameter
        lines.push_back(at + "stmt1 bad parameter " + outcome(exec_prepared(conn, "stmt1", {"five"})));
        break;
      case 10:  // a statement nobody prepared
        lines.push_back(at + "unknown " + outcome(exec_prepared(conn, "no_such_statement", {})));
        lines.push_back(at + "describe unknown " + describe_prepared(conn, "no_such_statement"));
        break;
      case 12: {  // the same inside a transaction, which it aborts
        exec_ok(conn, "BEGIN");
        lines.push_back(at + "unknown in transaction " +
                        outcome(exec_prepared(conn, "no_such_statement", {})));
        lines.push_back(at + "stmt1 after the error " + outcome(exec_prepared(conn, "stmt1", {"1"})));
        lines.push_back(at + "rollback " + outcome(exec(conn, "ROLLBACK")));
        break;
      }
      case 16:  // preparing a name this connection already has
        lines.push_back(at + "prepare stmt1 again " + outcome(prepare(conn, "stmt1", "SELECT 1")));
        break;
      case 20: {  // the same inside a transaction, then a unique violation
        exec_ok(conn, "BEGIN");
        lines.push_back(at + "prepare get again in transaction " + outcome(prepare(conn, "get", "SELECT 2")));
        lines.push_back(at + "rollback " + outcome(exec(conn, "ROLLBACK")));
        exec_ok(conn, "BEGIN");
        lines.push_back(at + "insert duplicate " +
                        outcome(exec_prepared(conn, "insert", {id, "0", "duplicate"})));
        lines.push_back(at + "rollback " + outcome(exec(conn, "ROLLBACK")));
        break;
      }
      default:
        break;
    }
  }
  lines.push_back(me + "describe stmt1 at the end " + describe_prepared(conn, "stmt1"));
  lines.push_back(me + "end " +
                  outcome(exec(conn, std::string("SELECT count(*), coalesce(sum(id), 0) FROM ") + kTable +
                                         " WHERE client = " + std::to_string(c))));
}

// The libpq workload's transcript: the clients run concurrently, each on its own connection.
std::string libpq_transcript(const std::string& conninfo) {
  std::vector<std::vector<std::string>> transcripts(kClients);
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&conninfo, c, &lines = transcripts[c]] {
      try {
        libpq_client(conninfo, c, lines);
      } catch (const std::exception& e) {
        lines.push_back("c" + std::to_string(c) + " failed: " + e.what());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::string out;
  for (const auto& lines : transcripts) {
    for (const std::string& line : lines) out += line + "\n";
  }
  return out;
}

void check_libpq(const std::string& pool_mode) {
  std::string direct;
  {
    const FreshTable table;
    direct = libpq_transcript(postgres().conninfo(kDatabase));
    ASSERT_EQ(table.stored_rows(), expected_stored()) << "rows in PostgreSQL after the direct run";
  }
  // Directly, PostgreSQL's own answers; a few of them checked here, so that the test stays honest.
  ASSERT_EQ(direct.find(" failed: "), std::string::npos) << tail(direct);
  for (const char* line :
       {"c0 prepare stmt1 ok ", "c3 describe stmt1 params=1 $1:23 fields=2 product:23 who:25",
        "c3 describe insert params=3 $1:23 $2:23 $3:25 fields=0", "c5 i2 stmt1 rows=12,client 5",
        "c5 i5 stmt1 bad parameter sqlstate=22P02", "c1 i10 unknown sqlstate=26000",
        "c1 i10 describe unknown sqlstate=26000", "c1 i12 unknown in transaction sqlstate=26000",
        "c1 i12 stmt1 after the error sqlstate=25P02", "c2 i16 prepare stmt1 again sqlstate=42P05",
        "c2 i20 prepare get again in transaction sqlstate=42P05", "c2 i20 insert duplicate sqlstate=23505",
        "c4 i32 kept rows=500027", "c4 i53 late rows=500053 late 4", "c7 i24 insert ok INSERT 0 1 rollback",
        "c7 i24 get rows=", "c7 i23 get rows=c7-i23,7"}) {
    EXPECT_NE(direct.find(std::string(line) + "\n"), std::string::npos)
        << "directly against PostgreSQL, no line \"" << line << "\"";
  }

  Sluiced sluiced({.dbname = kDatabase, .pool_size = kPoolSize, .pool_mode = pool_mode});
  const FreshTable table;
  const std::size_t log_from = postgres().log().size();
  const std::string pooled = libpq_transcript(sluiced.conninfo(kDatabase));
  if (const auto diff = difference(direct, pooled)) {
    ADD_FAILURE() << "libpq through sluiced (" << pool_mode
                  << " mode) saw other results than directly: " << *diff;
  }
  EXPECT_EQ(table.stored_rows(), expected_stored()) << "rows in PostgreSQL after the run through sluiced";
  expect_named_executes(named_executes(log_from), true, "libpq through sluiced (" + pool_mode + " mode)");
}

TEST(DriverMatrix, LibpqPreparedTransactionMode) { check_libpq("transaction"); }
TEST(DriverMatrix, LibpqPreparedSessionMode) { check_libpq("session"); }

// ---- pgbench -M prepared ----

std::string pgbench_path() {
  if (const char* bindir = std::getenv("SLUICE_PG_BINDIR"); bindir != nullptr && *bindir != '\0') {
    return std::string(bindir) + "/pgbench";
  }
  return "/usr/lib/postgresql/15/bin/pgbench";  // Debian's; /usr/bin/pgbench is a wrapper around it
}

// A database made afresh for a test and dropped afterwards.
class ScratchDatabase {
 public:
  explicit ScratchDatabase(std::string name)
      : name_(std::move(name)), admin_(connect(postgres().conninfo())) {
    PQsetNoticeProcessor(
        admin_.get(), [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    exec_ok(admin_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    exec_ok(admin_, "CREATE DATABASE " + name_);
  }
  ~ScratchDatabase() {
    try {
      exec_ok(admin_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "dropping database " << name_ << ": " << e.what();
    }
  }
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  std::string name_;
  PgConn admin_;
};

std::vector<std::string> pgbench(const Endpoint& to, const std::string& dbname,
                                 std::vector<std::string> args) {
  std::vector<std::string> argv = {pgbench_path(), "-h", to.host, "-p", std::to_string(to.port)};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(dbname);
  return argv;
}

// pgbench only logs a failed PQprepare and goes on (the statement may exist on the server
// connection anyway, prepared by another client with the same text), so its errors are checked too.
void expect_pgbench_ok(const Captured& run, const std::string& what, int transactions) {
  const std::string processed = "number of transactions actually processed: " + std::to_string(transactions) +
                                "/" + std::to_string(transactions) + "\n";
  EXPECT_TRUE(run.succeeded() && run.out.find(processed) != std::string::npos &&
              run.out.find("number of failed transactions: 0 ") != std::string::npos &&
              run.err.find("pgbench: error:") == std::string::npos)
      << what << ": " << run.describe() << "\nstdout:\n"
      << tail(run.out) << "stderr (last lines):\n"
      << tail(run.err);
}

void check_pgbench(const std::string& pool_mode, int pool_size) {
  constexpr int kSelectTransactions = 200;
  constexpr int kTpcbTransactions = 50;
  if (access(pgbench_path().c_str(), X_OK) != 0) {
    FAIL() << "no " << pgbench_path() << ": Debian package postgresql-15 is missing (scripts/install-deps.sh "
           << "installs postgresql; set SLUICE_PG_BINDIR for another PostgreSQL)";
  }
  const ScratchDatabase database("driver_matrix_pgbench");
  const Captured init =
      run_capture(pgbench(direct_endpoint(), database.name(), {"-i", "-s", "1", "-q"}), kPgbenchTimeout);
  ASSERT_TRUE(init.succeeded()) << "pgbench -i directly against PostgreSQL: " << init.describe() << "\n"
                                << tail(init.err);

  Sluiced sluiced({.dbname = database.name(), .pool_size = pool_size, .pool_mode = pool_mode});
  const std::string clients = std::to_string(kClients);
  expect_pgbench_ok(run_capture(pgbench(endpoint_of(sluiced), database.name(),
                                        {"-M", "prepared", "-S", "-c", clients, "-j", "2", "-t",
                                         std::to_string(kSelectTransactions)}),
                                kPgbenchTimeout),
                    "pgbench -M prepared -S (select only) through sluiced in " + pool_mode + " mode",
                    kClients * kSelectTransactions);
  expect_pgbench_ok(
      run_capture(
          pgbench(endpoint_of(sluiced), database.name(),
                  // A thread per client: pgbench prepares with a blocking PQprepare, so a thread whose
                  // next client waits for a server stalls its other clients, which hold the servers
                  // inside their transactions (README: Prepared statements and drivers).
                  {"-M", "prepared", "-c", clients, "-j", clients, "-t", std::to_string(kTpcbTransactions)}),
          kPgbenchTimeout),
      "pgbench -M prepared (TPC-B) through sluiced in " + pool_mode + " mode", kClients * kTpcbTransactions);

  // TPC-B's books balance: each transaction adds one delta to an account, a teller, a branch and
  // the history, in one transaction.
  const PgConn direct = connect(postgres().conninfo(database.name()));
  EXPECT_EQ(scalar(direct, "SELECT count(*) FROM pgbench_history"),
            std::to_string(kClients * kTpcbTransactions));
  const std::string deltas = scalar(direct, "SELECT coalesce(sum(delta), 0) FROM pgbench_history");
  EXPECT_EQ(scalar(direct, "SELECT sum(abalance) FROM pgbench_accounts"), deltas);
  EXPECT_EQ(scalar(direct, "SELECT sum(tbalance) FROM pgbench_tellers"), deltas);
  EXPECT_EQ(scalar(direct, "SELECT sum(bbalance) FROM pgbench_branches"), deltas);
}

TEST(DriverMatrix, PgbenchPreparedTransactionMode) { check_pgbench("transaction", kPoolSize); }
// pgbench connects every client before any starts, so in session mode each needs a server of its own.
TEST(DriverMatrix, PgbenchPreparedSessionMode) { check_pgbench("session", kClients); }

}  // namespace
}  // namespace harness
