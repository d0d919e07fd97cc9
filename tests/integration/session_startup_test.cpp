// Session fidelity I, startup settings (issue 13): every parameter of a client's startup packet
// and its `options` become that client's session settings in both pool modes — the values, the
// ParameterStatus of the greeting, RESET, encodings and refusals are what a direct connection
// gives, compared here scenario by scenario with PostgreSQL itself.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_client.h"
#include "tests/integration/harness.h"
#include "tests/integration/scope_helpers.h"

namespace {

using harness::PgConn;
using harness::scalar;
using namespace std::chrono_literals;

constexpr const char* kDatabase = "session_startup";
constexpr const char* kPython = "/usr/bin/python3";  // Debian's: the drivers are Debian packages

// The settings under test, read back with current_setting().
constexpr std::array<const char*, 9> kSettings = {"client_encoding", "TimeZone",           "DateStyle",
                                                  "IntervalStyle",   "work_mem",           "application_name",
                                                  "search_path",     "extra_float_digits", "lock_timeout"};
// What PostgreSQL reports in the greeting (ParameterStatus).
constexpr std::array<const char*, 9> kReported = {
    "client_encoding", "DateStyle",        "TimeZone",
    "IntervalStyle",   "application_name", "standard_conforming_strings",
    "server_encoding", "is_superuser",     "session_authorization"};

// The psql: PGCLIENTENCODING, PGTZ, PGDATESTYLE, PGOPTIONS and application_name, here as
// conninfo keywords and options (the environment variables become the same packet parameters).
constexpr const char* kClientSettings =
    " client_encoding=LATIN1 application_name=myapp"
    " options='-c work_mem=7MB -c intervalstyle=postgres_verbose -c TimeZone=America/Los_Angeles"
    " -c DateStyle=Postgres,MDY --search-path=other,public -c extra_float_digits=1 -c lock_timeout=5s'";

std::string settings_of(const PgConn& conn) {
  std::string seen;
  for (const char* name : kSettings)
    seen +=
        std::string(name) + "=" + scalar(conn, std::string("select current_setting('") + name + "')") + "\n";
  return seen;
}

std::string reported_by(const PgConn& conn) {
  std::string seen;
  for (const char* name : kReported) {
    const char* value = PQparameterStatus(conn.get(), name);
    seen += std::string(name) + "=" + (value != nullptr ? value : "(none)") + "\n";
  }
  return seen;
}

// What libpq says of a refused login, without the part naming the socket.
std::string refusal_of(const PgConn& conn) {
  std::string message = PQerrorMessage(conn.get());
  if (const auto at = message.find("failed: "); at != std::string::npos) message.erase(0, at + 8);
  if (const auto end = message.find('\n'); end != std::string::npos) message.erase(end);
  return message;
}

class SessionStartupTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { scope_test::ensure_database(kDatabase); }
  void SetUp() override {
    sluiced_.emplace(harness::PoolOptions{.dbname = kDatabase, .pool_size = 2, .pool_mode = GetParam()});
  }

  [[nodiscard]] std::string direct(const std::string& extra = "") const {
    return harness::postgres().conninfo(kDatabase) + extra;
  }
  [[nodiscard]] std::string pooled(const std::string& extra = "") const {
    return sluiced_->conninfo(kDatabase) + extra;
  }

  std::optional<harness::Sluiced> sluiced_;
};

TEST_P(SessionStartupTest, StartupSettingsAreTheClientsAsDirect) {
  const PgConn direct_conn = harness::connect(direct(kClientSettings));
  const PgConn pooled_conn = harness::connect(pooled(kClientSettings));
  EXPECT_EQ(settings_of(pooled_conn), settings_of(direct_conn));
  EXPECT_EQ(reported_by(pooled_conn), reported_by(direct_conn));
  // sluicectl clients (--json) names each client's settings; its pool row carries them too.
  const nlohmann::json clients = ctltest::control(sluiced_->control_socket(), {{"cmd", "clients"}});
  ASSERT_EQ(clients["clients"].size(), 1U) << clients.dump();
  const nlohmann::json& settings = clients["clients"][0]["settings"];
  EXPECT_EQ(settings.size(), 9U) << settings.dump();
  EXPECT_EQ(settings.value("application_name", ""), "myapp") << settings.dump();
  EXPECT_EQ(settings.value("work_mem", ""), "7MB") << settings.dump();
  const nlohmann::json pools = ctltest::control(sluiced_->control_socket(), {{"cmd", "pools"}});
  EXPECT_EQ(pools["pools"][0]["settings"], settings) << pools.dump();
  // A client without settings of its own still gets the server's defaults.
  const PgConn plain_direct = harness::connect(direct());
  const PgConn plain_pooled = harness::connect(pooled());
  EXPECT_EQ(settings_of(plain_pooled), settings_of(plain_direct));
  EXPECT_EQ(scalar(plain_pooled, "select current_setting('application_name')"), "");
}

// libpq's environment variables arrive as the packet's own parameters (PGTZ → timezone, ...).
TEST_P(SessionStartupTest, PacketParametersAsDirect) {
  setenv("PGTZ", "Asia/Tokyo", 1);
  setenv("PGDATESTYLE", "SQL, DMY", 1);
  const PgConn direct_conn = harness::connect(direct());
  const PgConn pooled_conn = harness::connect(pooled());
  unsetenv("PGTZ");
  unsetenv("PGDATESTYLE");
  EXPECT_EQ(settings_of(pooled_conn), settings_of(direct_conn));
  EXPECT_EQ(reported_by(pooled_conn), reported_by(direct_conn));
}

// RESET returns to the startup value, as PostgreSQL does (PgBouncer returns to the server's).
TEST_P(SessionStartupTest, ResetReturnsToTheStartupValue) {
  for (const std::string& conninfo : {direct(kClientSettings), pooled(kClientSettings)}) {
    const PgConn conn = harness::connect(conninfo);
    harness::exec_ok(conn, "set datestyle = 'ISO, YMD'");
    harness::exec_ok(conn, "reset datestyle");
    EXPECT_EQ(scalar(conn, "show datestyle"), "Postgres, MDY") << conninfo;
    harness::exec_ok(conn, "set timezone = 'UTC'");
    harness::exec_ok(conn, "set work_mem = '1MB'");
    harness::exec_ok(conn, "reset all");
    EXPECT_EQ(scalar(conn, "show timezone"), "America/Los_Angeles") << conninfo;
    EXPECT_EQ(scalar(conn, "show work_mem"), "7MB") << conninfo;
  }
}

// A LATIN1 client's bytes are LATIN1 on the way in and out.
TEST_P(SessionStartupTest, Latin1ClientRoundTrips) {
  for (const std::string& conninfo : {direct(" client_encoding=LATIN1"), pooled(" client_encoding=LATIN1")}) {
    const PgConn conn = harness::connect(conninfo);
    EXPECT_EQ(scalar(conn, "select 'caf\xe9' || ':' || length('caf\xe9')"), "caf\xe9:4") << conninfo;
  }
}

// A setting PostgreSQL refuses at login is refused at login, in PostgreSQL's words.
TEST_P(SessionStartupTest, RefusedSettingsAsDirect) {
  for (const std::string options : {" options='-c no_such_setting=1'", " options='-c shared_buffers=1MB'",
                                    " options='-c work_mem=lots'", " options='-c work_mem'"}) {
    const PgConn direct_conn = harness::try_connect(direct(options));
    const PgConn pooled_conn = harness::try_connect(pooled(options));
    ASSERT_EQ(PQstatus(direct_conn.get()), CONNECTION_BAD) << options;
    EXPECT_EQ(PQstatus(pooled_conn.get()), CONNECTION_BAD) << options;
    EXPECT_EQ(refusal_of(pooled_conn), refusal_of(direct_conn)) << options;
  }
  const PgConn replication = harness::try_connect(pooled(" replication=database"));
  EXPECT_EQ(PQstatus(replication.get()), CONNECTION_BAD);
  EXPECT_NE(refusal_of(replication).find("replication connections are not supported"), std::string::npos)
      << refusal_of(replication);
  // Nothing of the refusals stays in the way of the next client.
  EXPECT_EQ(scalar(harness::connect(pooled()), "select 1"), "1");
}

// Clients with different settings never see each other's, however their transactions interleave.
TEST_P(SessionStartupTest, InterleavedClientsKeepTheirOwn) {
  if (GetParam() == "session") GTEST_SKIP() << "in session mode each client keeps its server anyway";
  // Three settings, two servers: a pool whose client waits takes the idle server of another.
  const PgConn tokyo = harness::connect(pooled(" application_name=a options='-c TimeZone=Asia/Tokyo'"));
  const PgConn utc = harness::connect(pooled(" application_name=b options='-c TimeZone=UTC'"));
  const PgConn plain = harness::connect(pooled());
  const PgConn observer = scope_test::direct(kDatabase);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(scalar(tokyo, "select current_setting('TimeZone') || current_setting('application_name')"),
              "Asia/Tokyoa");
    EXPECT_EQ(scalar(utc, "select current_setting('TimeZone') || current_setting('application_name')"),
              "UTCb");
    EXPECT_EQ(scalar(plain, "select current_setting('application_name')"), "");
    // pool_size bounds the servers of the database and user together, whatever the settings. At
    // rest, as now: a server closed for another settings set leaves a backend that exits a moment
    // later (slower on a loaded machine), so PostgreSQL may briefly list it beside its successor.
    EXPECT_TRUE(harness::wait_until([&] {
      return scope_test::client_backends(observer, kDatabase).size() <= 2;
    })) << scope_test::client_backends(observer, kDatabase).size()
        << " backends at rest";
  }
}

// Two settings sets busy at once share pool_size in proportion to their clients instead of trading
// servers back and forth (each trade a new PostgreSQL session): counted by pg_stat_database.
TEST(SessionStartupShareTest, TwoBusySettingsSetsKeepTheirServers) {
  scope_test::ensure_database(kDatabase);
  harness::Sluiced sluiced({.dbname = kDatabase, .pool_size = 4});
  const PgConn observer = scope_test::direct(kDatabase);
  const auto sessions = [&] {
    harness::exec_ok(observer, "select pg_stat_clear_snapshot()");
    return std::stoi(
        scalar(observer, "select sessions from pg_stat_database where datname = current_database()"));
  };
  const int before = sessions();
  std::atomic<int> wrong{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      const std::string zone = i % 2 == 0 ? "UTC" : "Asia/Tokyo";
      PGconn* conn =
          PQconnectdb((sluiced.conninfo(kDatabase) + " options='-c TimeZone=" + zone + "'").c_str());
      for (int t = 0; t < 300; ++t) {
        PGresult* result = PQexec(conn, "select current_setting('TimeZone')");
        if (PQresultStatus(result) != PGRES_TUPLES_OK || PQgetvalue(result, 0, 0) != zone) ++wrong;
        PQclear(result);
      }
      PQfinish(conn);
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(wrong.load(), 0);
  // PostgreSQL counts a session when it ends: the servers still open are added by hand.
  const int open = std::stoi(scalar(observer,
                                    "select count(*) from pg_stat_activity where datname = "
                                    "current_database() and pid <> pg_backend_pid()"));
  EXPECT_LE(sessions() - before + open, 12) << "4 servers, and a few trades while the sets start and stop";
}

// Drivers that set parameters at connect: psycopg's options, asyncpg's server_settings, pgjdbc's
// ApplicationName, currentSchema and options.
TEST_P(SessionStartupTest, DriversSettingParametersAtConnect) {
  const auto output = [](const std::vector<std::string>& argv) {
    const auto result = harness::run_capture(argv, 60s);
    EXPECT_TRUE(result.succeeded()) << result.describe() << "\n" << result.err;
    return result.out;
  };
  const auto run = [&](const std::string& program, const harness::Sluiced* through) {
    const std::string host = through != nullptr ? through->socket_dir() : harness::postgres().socket_dir();
    const int port = through != nullptr ? through->port() : harness::postgres().port();
    return output({kPython, "-E", "-s", "-c", program, host, std::to_string(port), kDatabase});
  };
  const std::string psycopg =
      "import sys, psycopg\n"
      "c = psycopg.connect(host=sys.argv[1], port=sys.argv[2], dbname=sys.argv[3], application_name='drv',"
      " options='-c search_path=other,public -c TimeZone=Europe/Paris')\n"
      "for n in ('application_name', 'search_path', 'TimeZone'):\n"
      "    print(c.execute('select current_setting(%s)', (n,)).fetchone()[0])\n";
  const std::string asyncpg =
      "import sys, asyncio, asyncpg\n"
      "async def main():\n"
      "    c = await asyncpg.connect(host=sys.argv[1], port=int(sys.argv[2]), database=sys.argv[3],"
      " server_settings={'application_name': 'drv', 'search_path': 'other,public', 'TimeZone': "
      "'Europe/Paris'})\n"
      "    for n in ('application_name', 'search_path', 'TimeZone'):\n"
      "        print(await c.fetchval('select current_setting($1)', n))\n"
      "asyncio.run(main())\n";
  for (const std::string& program : {psycopg, asyncpg}) {
    const std::string direct_out = run(program, nullptr);
    EXPECT_EQ(direct_out, "drv\nother,public\nEurope/Paris\n");
    EXPECT_EQ(run(program, &*sluiced_), direct_out);
  }
  const auto jdbc = [&](const std::string& host, int port) {
    return output({"java", std::string(SLUICE_DRIVERS_DIR) + "/JdbcWorkload.java", "--host", host, "--port",
                   std::to_string(port), "--dbname", kDatabase, "--user", scope_test::os_user(),
                   "--probe-settings", "application_name,search_path,lock_timeout", "--connect-properties",
                   "ApplicationName=drv|currentSchema=other,public|options=-c lock_timeout=5s"});
  };
  const std::string jdbc_direct = jdbc(harness::postgres().socket_dir(), harness::postgres().port());
  EXPECT_EQ(jdbc_direct, "drv\nother,public\n5s\n");
  EXPECT_EQ(jdbc(sluiced_->socket_dir(), sluiced_->port()), jdbc_direct);
}

INSTANTIATE_TEST_SUITE_P(Modes, SessionStartupTest, ::testing::Values("transaction", "session"),
                         [](const auto& test) { return test.param; });

}  // namespace
