#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "config/config_loader.h"
#include "config/key_locator.h"

namespace sluice::config {
namespace {

// The error for `text`, or a marker that makes the comparison fail readably.
std::string error_of(const std::string& text) {
  const auto result = parse_config(text, "cfg.json");
  return result.ok() ? "<no error>" : result.error();
}

Config parsed(const std::string& text) {
  auto result = parse_config(text, "cfg.json");
  EXPECT_TRUE(result.ok()) << result.error();
  return result.ok() ? *result : Config{};
}

TEST(ConfigDefaults, EmptyObjectGivesSchemaDefaults) {
  const Config config = parsed("{}");
  EXPECT_EQ(config, Config{});
  // The documented values, so that a changed default is a visible decision.
  EXPECT_EQ(config.listen.unix_socket_dir, "/run/sluice");
  EXPECT_EQ(config.listen.port, 6432);
  EXPECT_FALSE(config.listen.tcp.has_value());
  EXPECT_EQ(config.control.socket, "/run/sluice/control.sock");
  EXPECT_FALSE(config.control.group.has_value());
  EXPECT_EQ(config.pool.pool_size, 20);
  EXPECT_EQ(config.pool.pool_mode, PoolMode::transaction);
  EXPECT_EQ(config.pool.reset_query, "DISCARD ALL");
  EXPECT_TRUE(config.databases.empty());
  EXPECT_EQ(config.teardown.sla_ms, 5);
  EXPECT_EQ(config.teardown.max_ms, 10000);
  EXPECT_EQ(config.drain.timeout_s, 30);
  EXPECT_EQ(config.auth.type, AuthType::trust);
  EXPECT_EQ(config.log_level, "info");
}

TEST(ConfigDefaults, CommentsAloneAreAnEmptyConfig) {
  EXPECT_EQ(parsed("// nothing here\n/* still { nothing } */ {} // end"), Config{});
}

TEST(ConfigParse, FullConfigWithComments) {
  const Config config = parsed(R"({
    // Where clients connect.
    "listen": {
      "unix_socket_dir": "/tmp/sluice",  /* short: sun_path is 108 bytes */
      "port": 7432,
      "tcp": "127.0.0.1:7433"
    },
    "control": { "socket": "/tmp/sluice/ctl.sock", "group": "dba" },
    "pool": {
      "pool_size": 8,
      "pool_mode": "session",
      "query_wait_timeout_ms": 1000,
      "server_connect_timeout_ms": 2000,
      "server_login_retry_ms": 250,
      "server_idle_timeout_s": 30,
      "server_lifetime_s": 0,
      "idle_transaction_timeout_ms": 500,
      "client_idle_timeout_s": 60,
      "reset_query": "SELECT '// not a comment', '/* nor this */'",
      "max_prepared_statements": 0
    },
    "databases": {
      "app": { "conninfo": "host=/var/run/postgresql dbname=app" }
    },
    "teardown": { "sla_ms": 7, "max_ms": 2000 },
    "drain": { "timeout_s": 0 },
    "auth": { "type": "peer" },
    "limits": {
      "max_client_conn": 50,
      "startup_packet_max": 4096,
      "message_max": 1048576,
      "login_timeout_ms": 3000,
      "control_request_max": 1024
    },
    "diagnostics": { "slow_callback_ms": 20 },
    "workers": 3,
    "log_level": "debug"
  })");

  EXPECT_EQ(config.listen.unix_socket_dir, "/tmp/sluice");
  EXPECT_EQ(config.listen.port, 7432);
  EXPECT_EQ(config.listen.tcp, "127.0.0.1:7433");
  EXPECT_EQ(config.control.socket, "/tmp/sluice/ctl.sock");
  EXPECT_EQ(config.control.group, "dba");

  PoolSettings pool;
  pool.pool_size = 8;
  pool.pool_mode = PoolMode::session;
  pool.query_wait_timeout_ms = 1000;
  pool.server_connect_timeout_ms = 2000;
  pool.server_login_retry_ms = 250;
  pool.server_idle_timeout_s = 30;
  pool.server_lifetime_s = 0;
  pool.idle_transaction_timeout_ms = 500;
  pool.client_idle_timeout_s = 60;
  pool.reset_query = "SELECT '// not a comment', '/* nor this */'";
  pool.max_prepared_statements = 0;
  EXPECT_EQ(config.pool, pool);

  ASSERT_EQ(config.databases.size(), 1U);
  EXPECT_EQ(config.databases.at("app").conninfo, "host=/var/run/postgresql dbname=app");
  EXPECT_EQ(config.databases.at("app").pool, pool);

  EXPECT_EQ(config.teardown.sla_ms, 7);
  EXPECT_EQ(config.teardown.max_ms, 2000);
  EXPECT_EQ(config.drain.timeout_s, 0);
  EXPECT_EQ(config.auth.type, AuthType::peer);
  EXPECT_EQ(config.limits.max_client_conn, 50);
  EXPECT_EQ(config.limits.startup_packet_max, 4096);
  EXPECT_EQ(config.limits.message_max, 1048576);
  EXPECT_EQ(config.limits.login_timeout_ms, 3000);
  EXPECT_EQ(config.limits.control_request_max, 1024);
  EXPECT_EQ(config.diagnostics.slow_callback_ms, 20);
  EXPECT_EQ(config.workers, 3);
  EXPECT_EQ(config.log_level, "debug");
}

TEST(ConfigParse, DatabasesInheritThePoolSectionAndOverrideIt) {
  // `pool` stands after `databases` on purpose: inheritance must not depend on order.
  const Config config = parsed(R"({
    "databases": {
      "own": { "conninfo": "dbname=own", "pool_size": 3, "pool_mode": "session", "reset_query": "" },
      "inherits": { "conninfo": "" }
    },
    "pool": { "pool_size": 9, "query_wait_timeout_ms": 42 }
  })");

  PoolSettings top;
  top.pool_size = 9;
  top.query_wait_timeout_ms = 42;
  EXPECT_EQ(config.pool, top);
  EXPECT_EQ(config.databases.at("inherits").pool, top);

  PoolSettings own = top;
  own.pool_size = 3;
  own.pool_mode = PoolMode::session;
  own.reset_query = "";
  EXPECT_EQ(config.databases.at("own").pool, own);
  EXPECT_EQ(config.databases.at("own").conninfo, "dbname=own");
}

TEST(ConfigParse, AcceptsBoundsAndUriConninfo) {
  const Config config = parsed(R"({
    "listen": { "port": 65535, "tcp": "[::1]:1" },
    "pool": { "pool_size": 1, "query_wait_timeout_ms": 0 },
    "databases": { "uri": { "conninfo": "postgresql://app@db.example:5433/app?sslmode=require" } },
    "teardown": { "sla_ms": 10000 }
  })");
  EXPECT_EQ(config.listen.port, 65535);
  EXPECT_EQ(config.listen.tcp, "[::1]:1");
  EXPECT_EQ(config.pool.pool_size, 1);
  EXPECT_EQ(config.pool.query_wait_timeout_ms, 0);
  EXPECT_EQ(config.teardown.sla_ms, 10000);
}

TEST(ConfigErrors, UnknownKey) {
  EXPECT_EQ(error_of("{\n  \"listen\": {\n    \"prot\": 6432\n  }\n}"),
            "cfg.json:3: unknown key 'listen.prot'");
  EXPECT_EQ(error_of("{\n\n  \"lisen\": {}\n}"), "cfg.json:3: unknown key 'lisen'");
  EXPECT_EQ(error_of(R"({
    "databases": {
      "app": {
        "conninfo": "",
        "pool_sise": 3
      }
    }
  })"),
            "cfg.json:5: unknown key 'databases.app.pool_sise'");
}

TEST(ConfigErrors, WrongTypeNamesTheKeyAndItsLine) {
  // The comments mention the key and hold braces and quotes: the locator must skip them.
  EXPECT_EQ(error_of(R"({
    // "databases": { "app": { "pool_size": 1 } }
    "databases": {
      /* "pool_size": "x" { */
      "app": {
        "conninfo": "dbname='app \"quoted\" {'",
        "pool_size": "10"
      }
    }
  })"),
            "cfg.json:7: key 'databases.app.pool_size': expected an integer, got a string");
  EXPECT_EQ(error_of("{\n  \"listen\": { \"port\": \"6432\" }\n}"),
            "cfg.json:2: key 'listen.port': expected an integer, got a string");
  EXPECT_EQ(error_of("{ \"listen\": { \"unix_socket_dir\": 5 } }"),
            "cfg.json:1: key 'listen.unix_socket_dir': expected a string, got an integer");
  EXPECT_EQ(error_of("{\n\"control\": { \"group\": null }\n}"),
            "cfg.json:2: key 'control.group': expected a string, got null");
  EXPECT_EQ(error_of("{\n\"listen\": [6432]\n}"),
            "cfg.json:2: key 'listen': expected an object, got an array");
  EXPECT_EQ(error_of("{\n\"databases\": { \"app\": \"dbname=app\" }\n}"),
            "cfg.json:2: key 'databases.app': expected an object, got a string");
  EXPECT_EQ(error_of("\n[]"), "cfg.json:2: the top level: expected an object, got an array");
}

TEST(ConfigErrors, IntegersRejectFloatsAndBooleans) {
  EXPECT_EQ(error_of("{\n\"pool\": {\n\"pool_size\": 1.5 }}"),
            "cfg.json:3: key 'pool.pool_size': expected an integer, got 1.5");
  EXPECT_EQ(error_of("{\n\"pool\": {\n\"pool_size\": 10.0 }}"),
            "cfg.json:3: key 'pool.pool_size': expected an integer, got 10.0");
  EXPECT_EQ(error_of("{\"drain\": {\n\"timeout_s\": true }}"),
            "cfg.json:2: key 'drain.timeout_s': expected an integer, got a boolean");
}

TEST(ConfigErrors, OutOfRange) {
  EXPECT_EQ(error_of("{\"listen\": {\n\"port\": 0 }}"),
            "cfg.json:2: key 'listen.port': must be between 1 and 65535, got 0");
  EXPECT_EQ(error_of("{\"listen\": {\n\"port\": 65536 }}"),
            "cfg.json:2: key 'listen.port': must be between 1 and 65535, got 65536");
  EXPECT_EQ(error_of("{\"pool\": {\n\n\"pool_size\": 0 }}"),
            "cfg.json:3: key 'pool.pool_size': must be at least 1, got 0");
  EXPECT_EQ(error_of("{\"pool\": {\n\"server_lifetime_s\": -1 }}"),
            "cfg.json:2: key 'pool.server_lifetime_s': must be at least 0, got -1");
  EXPECT_EQ(error_of("{\"limits\": {\n\"message_max\": 2147483648 }}"),
            "cfg.json:2: key 'limits.message_max': must be at most 2147483647, got 2147483648");
  // 2^64-1 must not wrap to -1 on its way to an int.
  EXPECT_EQ(error_of("{\"limits\": {\n\"message_max\": 18446744073709551615 }}"),
            "cfg.json:2: key 'limits.message_max': must be at most 2147483647, got 18446744073709551615");
  EXPECT_EQ(error_of("{\"teardown\": {\n\"sla_ms\": 0 }}"),
            "cfg.json:2: key 'teardown.sla_ms': must be at least 1, got 0");
  EXPECT_EQ(error_of("{\"diagnostics\": {\n\"slow_callback_ms\": 0 }}"),
            "cfg.json:2: key 'diagnostics.slow_callback_ms': must be at least 1, got 0");
  EXPECT_EQ(error_of("{\n\"workers\": 0}"), "cfg.json:2: key 'workers': must be between 1 and 64, got 0");
  EXPECT_EQ(error_of("{\"workers\": 65}"), "cfg.json:1: key 'workers': must be between 1 and 64, got 65");
}

TEST(ConfigErrors, TeardownSlaMustNotExceedMax) {
  EXPECT_EQ(error_of("{\"teardown\": {\n\"sla_ms\": 20,\n\"max_ms\": 10 }}"),
            "cfg.json:2: key 'teardown.sla_ms': teardown.sla_ms (20) must not exceed teardown.max_ms (10)");
  EXPECT_EQ(error_of("{\"teardown\": {\n\"max_ms\": 2 }}"),
            "cfg.json:2: key 'teardown.max_ms': teardown.sla_ms (5) must not exceed teardown.max_ms (2)");
}

TEST(ConfigErrors, Choices) {
  EXPECT_EQ(error_of("{\"pool\": {\n\"pool_mode\": \"statement\" }}"),
            "cfg.json:2: key 'pool.pool_mode': expected \"transaction\" or \"session\", got \"statement\"");
  EXPECT_EQ(
      error_of("{\"auth\": {\n\"type\": \"ldap\" }}"),
      "cfg.json:2: key 'auth.type': expected \"trust\", \"peer\", \"md5\", \"scram-sha-256\", \"cert\" or "
      "\"hba\", got \"ldap\"");
  EXPECT_EQ(
      error_of("{\n\"log_level\": \"warn\"}"),
      "cfg.json:2: key 'log_level': expected \"debug\", \"info\", \"warning\" or \"error\", got \"warn\"");
}

TEST(ConfigErrors, ListenTcp) {
  EXPECT_EQ(error_of("{\"listen\": {\n\"tcp\": \"localhost\" }}"),
            "cfg.json:2: key 'listen.tcp': expected \"host:port\", got \"localhost\"");
  EXPECT_EQ(error_of("{\"listen\": {\n\"tcp\": \":6432\" }}"),
            "cfg.json:2: key 'listen.tcp': expected \"host:port\", got \":6432\"");
  EXPECT_EQ(error_of("{\"listen\": {\n\"tcp\": \"0.0.0.0:0\" }}"),
            "cfg.json:2: key 'listen.tcp': port must be between 1 and 65535, got \"0\"");
  EXPECT_EQ(error_of("{\"listen\": {\n\"tcp\": \"0.0.0.0:70000\" }}"),
            "cfg.json:2: key 'listen.tcp': port must be between 1 and 65535, got \"70000\"");
  EXPECT_EQ(error_of("{\"listen\": {\n\"tcp\": \"host:64x\" }}"),
            "cfg.json:2: key 'listen.tcp': port must be between 1 and 65535, got \"64x\"");
  EXPECT_EQ(error_of("{\"listen\": {\n\"tcp\": \"::1:6432\" }}"),
            "cfg.json:2: key 'listen.tcp': an IPv6 host needs brackets, as in \"[::1]:6432\"");
}

TEST(ConfigErrors, EmptyStringsWhereAPathIsNeeded) {
  EXPECT_EQ(error_of("{\"control\": {\n\"socket\": \"\" }}"),
            "cfg.json:2: key 'control.socket': must not be empty");
  EXPECT_EQ(error_of("{\"listen\": {\n\"unix_socket_dir\": \"\" }}"),
            "cfg.json:2: key 'listen.unix_socket_dir': must not be empty");
}

TEST(ConfigErrors, SocketPathTooLong) {
  const std::string dir = "/" + std::string(100, 'd');  // + "/.s.PGSQL.6432" is 115 bytes
  EXPECT_EQ(error_of("{\"listen\": {\n\"unix_socket_dir\": \"" + dir + "\" }}"),
            "cfg.json:2: key 'listen.unix_socket_dir': socket path \"" + dir +
                "/.s.PGSQL.6432\" is 115 bytes, over the 107 a Unix socket allows");
}

TEST(ConfigErrors, Databases) {
  EXPECT_EQ(error_of("{\"databases\": {\n\"app\": {\n\"pool_size\": 2 }}}"),
            "cfg.json:2: key 'databases.app': missing required key 'conninfo'");
  EXPECT_EQ(error_of("{\"databases\": {\n\"\": { \"conninfo\": \"\" }}}"),
            "cfg.json:2: key 'databases': names must not be empty");
  EXPECT_EQ(error_of("{\"databases\": {\n\"app\": {\n\"conninfo\": 5 }}}"),
            "cfg.json:3: key 'databases.app.conninfo': expected a string, got an integer");
}

TEST(ConfigErrors, BadConninfoCarriesLibpqMessage) {
  EXPECT_EQ(error_of("{\"databases\": {\n\"app\": {\n\"conninfo\": \"host=db foo\" }}}"),
            "cfg.json:3: key 'databases.app.conninfo': invalid conninfo: missing \"=\" after \"foo\" in "
            "connection info "
            "string");
  EXPECT_EQ(error_of("{\"databases\": {\n\"app\": {\n\n\"conninfo\": \"hots=db\" }}}"),
            "cfg.json:4: key 'databases.app.conninfo': invalid conninfo: invalid connection option \"hots\"");
  // Values libpq would refuse only when connecting: refused at load, in its words.
  EXPECT_EQ(error_of("{\"databases\": {\n\"app\": {\n\"conninfo\": \"host=db sslmode=bogus\" }}}"),
            "cfg.json:3: key 'databases.app.conninfo': invalid conninfo: invalid sslmode value: \"bogus\"");
  EXPECT_EQ(error_of("{\"databases\": {\n\"app\": {\n\"conninfo\": \"channel_binding=always\" }}}"),
            "cfg.json:3: key 'databases.app.conninfo': invalid conninfo: invalid channel_binding value: "
            "\"always\"");
  EXPECT_EQ(
      error_of("{\"databases\": {\n\"app\": {\n\"conninfo\": \"sslmode=verify-full gssencmode=disable\" }}}"),
      "<no error>");
}

TEST(ConfigErrors, DuplicateKey) {
  EXPECT_EQ(error_of("{\n\"listen\": { \"port\": 1 },\n\"listen\": { \"port\": 2 }\n}"),
            "cfg.json:3: duplicate key 'listen'");
  EXPECT_EQ(error_of("{\"pool\": {\n\"pool_size\": 1,\n// again\n\"pool_size\": 2 }}"),
            "cfg.json:4: duplicate key 'pool.pool_size'");
}

TEST(ConfigErrors, ReportsTheFirstProblemInTheFile) {
  // Alphabetically "listen" comes before "zzz"; the file says otherwise.
  EXPECT_EQ(error_of("{\n\"zzz\": 1,\n\"pool\": { \"pool_size\": 0 },\n\"listen\": { \"port\": \"x\" }\n}"),
            "cfg.json:2: unknown key 'zzz'");
  EXPECT_EQ(error_of("{\n\"listen\": { \"port\": \"x\" },\n\"aaa\": 1\n}"),
            "cfg.json:2: key 'listen.port': expected an integer, got a string");
}

TEST(ConfigErrors, EscapedKeyIsLocated) {
  // "\u0070ort" is "port": known to nlohmann, so the locator must decode it too.
  EXPECT_EQ(error_of("{\"listen\": {\n\n\"\\u0070ort\": true }}"),
            "cfg.json:3: key 'listen.port': expected an integer, got a boolean");
}

TEST(ConfigErrors, SyntaxErrorLine) {
  EXPECT_EQ(error_of("{\n  \"listen\": {\n    \"port\": 6432,\n  },\n}"),
            "cfg.json:4: syntax error: unexpected '}'; expected string literal");
  EXPECT_EQ(error_of("{\n  // fine\n  \"log_level\" \"info\"\n}"),
            "cfg.json:3: syntax error: unexpected string literal; expected ':'");
  EXPECT_EQ(error_of("{\n/* never closed\n\n"),
            "cfg.json:4: syntax error: invalid comment; missing closing '*/'; last read: '{<U+000A>/* never "
            "closed<U+000A><U+000A>'; expected string literal");
  EXPECT_EQ(error_of(""),
            "cfg.json:1: syntax error: unexpected end of input; expected '[', '{', or a literal");
  EXPECT_EQ(error_of("{\"pool\": {\"pool_size\": 1e999}}"),
            "cfg.json: syntax error: number overflow parsing '1e999'");
}

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char name[] = "/tmp/sluice-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(name), nullptr);
    dir_ = name;
  }
  void TearDown() override {
    std::remove((dir_ + "/sluice.json").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(ConfigFile, LoadsAndNamesTheFileInErrors) {
  const std::string path = dir_ + "/sluice.json";
  std::ofstream(path) << "{\n  \"listen\": { \"port\": 7000 }\n}\n";
  const auto good = load_config_file(path);
  ASSERT_TRUE(good.ok()) << good.error();
  EXPECT_EQ(good->listen.port, 7000);

  std::ofstream(path) << "{\n  \"listen\": { \"port\": 0 }\n}\n";
  const auto bad = load_config_file(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), path + ":2: key 'listen.port': must be between 1 and 65535, got 0");
}

TEST_F(ConfigFile, MissingFile) {
  const auto result = load_config_file(dir_ + "/absent.json");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error(), dir_ + "/absent.json: cannot read: No such file or directory");
}

TEST_F(ConfigFile, Directory) {
  const auto result = load_config_file(dir_);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error(), dir_ + ": cannot read: Is a directory");
}

TEST(ConfigKeyLocator, LinesOfNestedKeys) {
  const KeyLocator keys(
      "// header { \"a\": 1 }\n"
      "{\n"
      "  \"a\": { /* \"b\":\n \"c\" */\n"
      "    \"b\": \"}\\\"{\", \"c\": [ { \"d\": 1 } ],\n"
      "    \"e\": {}\n"
      "  }\n"
      "}\n");
  EXPECT_EQ(keys.line_of({}), 2);
  EXPECT_EQ(keys.line_of({"a"}), 3);
  EXPECT_EQ(keys.line_of({"a", "b"}), 5);
  EXPECT_EQ(keys.line_of({"a", "c"}), 5);
  EXPECT_EQ(keys.line_of({"a", "e"}), 6);
  EXPECT_EQ(keys.line_of({"a", "d"}), std::nullopt);  // inside an array: not recorded
  EXPECT_EQ(keys.line_of({"a", "c", "d"}), std::nullopt);
  EXPECT_EQ(keys.line_of({"b"}), std::nullopt);  // only in a comment
  EXPECT_FALSE(keys.first_duplicate().has_value());
}

TEST(ConfigKeyLocator, DuplicatesAreWithinOneObject) {
  // The same name in sibling objects is no duplicate.
  EXPECT_FALSE(KeyLocator(R"({"a": {"x": 1}, "b": {"x": 1}})").first_duplicate().has_value());
  const KeyLocator keys("{\"a\": {\"x\": 1,\n\"x\": 2}}");
  ASSERT_TRUE(keys.first_duplicate().has_value());
  EXPECT_EQ(dotted(keys.first_duplicate()->path), "a.x");
  EXPECT_EQ(keys.first_duplicate()->line, 2);
}

TEST(ConfigKeyLocator, DottedPaths) {
  EXPECT_EQ(dotted({}), "");
  EXPECT_EQ(dotted({"databases", "app", "pool_size"}), "databases.app.pool_size");
}

TEST(ConfigParse, MetricsListenIsHostPortOrASocketPath) {
  EXPECT_FALSE(parsed("{}").metrics.listen.has_value());  // off by default
  EXPECT_EQ(parsed(R"({"metrics": {"listen": "127.0.0.1:9127"}})").metrics.listen, "127.0.0.1:9127");
  EXPECT_EQ(parsed(R"({"metrics": {"listen": "/run/sluice/metrics.sock"}})").metrics.listen,
            "/run/sluice/metrics.sock");
  EXPECT_EQ(
      error_of("{\n\"metrics\": {\"listen\": \"localhost\"}}"),
      "cfg.json:2: key 'metrics.listen': expected \"host:port\", got \"localhost\" (a Unix socket is a path "
      "with a '/')");
  EXPECT_EQ(error_of("{\n\"metrics\": {\"listen\": \"\"}}"),
            "cfg.json:2: key 'metrics.listen': must not be empty");
  EXPECT_EQ(error_of("{\"metrics\": {\n\"listen\": \"/" + std::string(120, 'x') + "\"}}"),
            "cfg.json:2: key 'metrics.listen': socket path \"/" + std::string(120, 'x') +
                "\" is 121 bytes, over the 107 a Unix socket allows (a Unix socket is a path with a '/')");
  EXPECT_EQ(error_of("{\"metrics\": {\n\"port\": 1}}"), "cfg.json:2: unknown key 'metrics.port'");
}

}  // namespace
}  // namespace sluice::config
